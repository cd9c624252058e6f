"""Inference of the shipped networks along LLG trajectories: today's path against the first one.

    PYTHONPATH=. python benchmarks/bench_fastpath.py [--sizes 32 64 128 256] [--threads 1] [--repeats 5]

For both shipped networks (the square one at fixed filling, so each evaluation includes its μ*
solve), float64 and float32, each size L: a few steps of stochastic LLG (midpoint, two evaluations
per step) from random spins, timed per evaluation for

* ``fast`` — the default: ``sdlib.fastpath`` (no autograd) and, at fixed filling, the μ* search
  started at the previous μ* (``ensemble.FixedFilling``);
* ``before`` — the path of the first release: autograd fields (``ff.fast = False``) and a μ* search
  over the whole trained μ range at every evaluation (``FixedFilling(..., reuse_mu=False)``).

The two are run alternately (fast, before, fast, ...; the median of ``--repeats`` pairs after a
warm-up), so their ratio does not depend on the machine's load; the fields of both agree to
round-off (tests/test_fastpath.py, tests/test_ensemble.py). Reports µs per site and evaluation,
the speed-up, and the exponent p of time ∝ N^p of each path over the sizes. Writes
results_fastpath.md and .json (atomically) next to this file.
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

from sdlib import LLG, lattice, random_spins
from sdlib.ensemble import FixedFilling
from sdlib.io import atomic_write
from sdlib.nn import MLForceField

HERE = Path(__file__).resolve().parent
MODELS = {"square-double-exchange": "square", "triangular-tetrahedral": "triangular"}
STEPS = 4  # LLG steps per timing: 2 * STEPS + 1 evaluations


def measure(name: str, L: int, dtype, repeats: int) -> tuple[float, float]:
    """µs per site and evaluation along a short quench: (fast, before)."""
    ff = MLForceField.pretrained(name, getattr(lattice, MODELS[name])(L), dtype=dtype)
    spins = random_spins(ff.n_sites, seed=0, dtype=dtype)
    fixed = ff.mu_input and "filling" in ff.physics
    before = FixedFilling(ff, filling=ff.physics["filling"], reuse_mu=False) if fixed else ff

    def run(fast: bool) -> float:
        ff.fast = fast
        llg = LLG(ff if fast else before, dt=0.01, alpha=0.5, kT=0.01, seed=1)
        t0 = time.perf_counter()
        llg.run(spins, STEPS)
        return (time.perf_counter() - t0) / (2 * STEPS + 1)

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
                             "before_us": s, "speedup": s / f})
                print(f"{name:24s} {rows[-1]['dtype']:8s} L = {L:4d}: fast {f:7.2f} µs/site, before {s:7.2f} "
                      f"µs/site, x{s / f:.2f}", flush=True)
            fits.append({"model": name, "dtype": rows[-1]["dtype"], "p_fast": exponent(args.sizes, fast),
                         "p_before": exponent(args.sizes, slow)})
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    meta = {"date": datetime.date.today().isoformat(), "cpu": platform.processor() or platform.machine(),
            "threads": args.threads, "load": load, "torch": torch.__version__, "repeats": args.repeats}
    lines = [f"# Inference along LLG quenches: fast path against the first release ({meta['date']}, {meta['cpu']}, {args.threads} thread(s), "
             f"load {load}, torch {meta['torch']})", "",
             "| model | dtype | L | fast (µs/site) | before (µs/site) | speed-up |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['dtype']} | {r['L']} | {r['fast_us']:.2f} | {r['before_us']:.2f} | "
              f"{r['speedup']:.2f} |" for r in rows]
    lines += ["", "Time per evaluation ∝ N^p:", "", "| model | dtype | p (fast) | p (before) |", "|---|---|---|---|"]
    lines += [f"| {f['model']} | {f['dtype']} | {f['p_fast']:.2f} | {f['p_before']:.2f} |" for f in fits]
    with atomic_write(HERE / "results_fastpath.md", mode="w") as fh:
        fh.write("\n".join(lines) + "\n")
    with atomic_write(HERE / "results_fastpath.json", mode="w") as fh:
        json.dump({"meta": meta, "rows": rows, "fits": fits}, fh, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
