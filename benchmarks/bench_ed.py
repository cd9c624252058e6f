"""ExactSolver overhead: one field evaluation vs a bare ``torch.linalg.eigh`` of the same matrix.

Both are timed interleaved in the same process (median of ``--repeat`` runs), so the ratio is
robust to the machine's load. Usage: ``python benchmarks/bench_ed.py [--L 30] [--repeat 5]``.
"""
import argparse
import os
import platform
import statistics
import time
from datetime import date

import torch

from sdlib import ExactSolver, SDModel, lattice, random_spins


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--L", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    model = SDModel(lattice.square(args.L), t=1.0, J=6.0, filling=0.485)
    ed = ExactSolver(model)
    S = random_spins(model.n_sites, seed=0)
    H = model.hamiltonian(S)
    ed(S)  # warm-up (caches the hopping matrix)
    t_eigh, t_ed = [], []
    for _ in range(args.repeat):
        t_eigh.append(timed(lambda: torch.linalg.eigh(H)))
        t_ed.append(timed(lambda: ed(S)))
    a, b = statistics.median(t_eigh), statistics.median(t_ed)
    load = os.getloadavg()[0]
    print(f"| {args.L}x{args.L} square (dim {model.dim}) | {a:.3f} s | {b:.3f} s | {b / a:.2f} | "
          f"{torch.get_num_threads()} threads, load {load:.1f} | {platform.processor() or platform.machine()} | {date.today()} |")


if __name__ == "__main__":
    main()
