"""The network's inference path without autograd (sdlib.fastpath) against the autograd path.

    PYTHONPATH=. python benchmarks/bench_fastpath.py [--sizes 32 64 128 256] [--threads 1] [--repeats 5]

For both shipped networks (energy and fields of one configuration; the square one at fixed filling,
so each evaluation includes its μ* solve), float64 and float32, each size L: the two paths are
timed alternately (fast, autograd, fast, ...; the median of ``--repeats`` pairs after a warm-up),
so their ratio does not depend on the machine's load. Reports µs per site, the speed-up, and the
exponent p of time ∝ N^p of each path over the sizes. Writes results_fastpath.md and .json
(atomically) next to this file.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from sdlib import lattice, random_spins
from sdlib.io import atomic_write
from sdlib.nn import MLForceField

HERE = Path(__file__).resolve().parent
MODELS = {"square-double-exchange": "square", "triangular-tetrahedral": "triangular"}


def measure(name: str, L: int, dtype, repeats: int) -> tuple[float, float]:
    ff = MLForceField.pretrained(name, getattr(lattice, MODELS[name])(L), dtype=dtype)
    spins = random_spins(ff.n_sites, seed=0, dtype=dtype)

    def run(fast: bool) -> float:
        ff.fast = fast
        t0 = time.perf_counter()
        ff(spins)
        return time.perf_counter() - t0

    run(True), run(False)  # warm-up
    fast, slow = [], []
    for _ in range(repeats):
        fast.append(run(True))
        slow.append(run(False))
    n = ff.n_sites
    return statistics.median(fast) / n * 1e6, statistics.median(slow) / n * 1e6


def exponent(sizes, us_per_site) -> float:
    n = np.array(sizes, dtype=float) ** 2
    return float(np.polyfit(np.log(n), np.log(np.array(us_per_site) * n), 1)[0])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or min(args.sizes) < 8:
        p.error("--repeats and --threads must be >= 1 and every size >= 8")
    torch.set_num_threads(args.threads)
    rows, fits = [], []
    for name in MODELS:
        for dtype in (torch.float64, torch.float32):
            fast, slow = [], []
            for L in args.sizes:
                f, s = measure(name, L, dtype, args.repeats)
                fast.append(f), slow.append(s)
                rows.append({"model": name, "dtype": str(dtype).removeprefix("torch."), "L": L, "fast_us": f,
                             "autograd_us": s, "speedup": s / f})
                print(f"{name:24s} {rows[-1]['dtype']:8s} L = {L:4d}: fast {f:7.2f} µs/site, autograd {s:7.2f} "
                      f"µs/site, x{s / f:.2f}", flush=True)
            fits.append({"model": name, "dtype": rows[-1]["dtype"], "p_fast": exponent(args.sizes, fast),
                         "p_autograd": exponent(args.sizes, slow)})
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    meta = {"date": datetime.date.today().isoformat(), "cpu": platform.processor() or platform.machine(),
            "threads": args.threads, "load": load, "torch": torch.__version__, "repeats": args.repeats}
    lines = [f"# Fast inference path against autograd ({meta['date']}, {meta['cpu']}, {args.threads} thread(s), "
             f"load {load}, torch {meta['torch']})", "",
             "| model | dtype | L | fast (µs/site) | autograd (µs/site) | speed-up |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['dtype']} | {r['L']} | {r['fast_us']:.2f} | {r['autograd_us']:.2f} | "
              f"{r['speedup']:.2f} |" for r in rows]
    lines += ["", "Time per evaluation ∝ N^p:", "", "| model | dtype | p (fast) | p (autograd) |", "|---|---|---|---|"]
    lines += [f"| {f['model']} | {f['dtype']} | {f['p_fast']:.2f} | {f['p_autograd']:.2f} |" for f in fits]
    with atomic_write(HERE / "results_fastpath.md", mode="w") as fh:
        fh.write("\n".join(lines) + "\n")
    with atomic_write(HERE / "results_fastpath.json", mode="w") as fh:
        json.dump({"meta": meta, "rows": rows, "fits": fits}, fh, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
