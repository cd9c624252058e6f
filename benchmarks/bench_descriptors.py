"""Speed of the descriptor: forward + backward time per site.

    PYTHONPATH=. python benchmarks/bench_descriptors.py [--sizes 64 256] [--repeats 5] [--out FILE]

For each lattice kind (default cutoffs), size L and device (CPU; CUDA when available) we time
``desc(spins)`` followed by ``backward`` of a random linear function of the features (what a
Behler–Parrinello network needs to obtain fields), take the median of ``--repeats`` runs after one
warm-up, and report microseconds per site. With ``--out`` a Markdown table with machine and date is
written (atomically).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import torch

from sdlib import lattice, random_spins
from sdlib.descriptors import Descriptor


def time_one(kind: str, L: int, device: str, repeats: int, dtype=torch.float64) -> tuple[int, float]:
    lat = getattr(lattice, kind)(L)
    desc = Descriptor(lat, dtype=dtype).to(device)
    gen = torch.Generator().manual_seed(0)
    spins = random_spins(lat.n_sites, generator=gen, dtype=dtype, device=device)
    weights = torch.randn(desc.n_features, generator=gen, dtype=dtype).to(device)

    def step():
        s = spins.clone().requires_grad_(True)
        (desc(s) @ weights).sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return desc.n_features, statistics.median(times) / lat.n_sites * 1e6


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{platform.node()} ({cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads{gpu})"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None, help="write a Markdown table here")
    args = p.parse_args(argv)
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = ["| lattice | L | N | features | device | forward+backward (µs/site) |", "|---|---|---|---|---|---|"]
    for kind in ("square", "triangular"):
        for L in args.sizes:
            for dev in devices:
                F, us = time_one(kind, L, dev, args.repeats)
                rows.append(f"| {kind} | {L} | {L * L} | {F} | {dev} | {us:.3g} |")
                print(rows[-1], flush=True)
    header = [f"Machine: {machine()}", f"Date: {datetime.date.today().isoformat()}", "",
              "float64, default cutoffs, median of "
              f"{args.repeats} runs after a warm-up; one configuration (batch 1).", ""]
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as fh:
            fh.write("\n".join(header + rows) + "\n")
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
