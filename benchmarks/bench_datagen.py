"""Labelling throughput of the data engine: exact grand-canonical labels per hour.

One label is ``ExactSolver.grand_labels(spins, mus, kT)`` of one frame: one ``eigh`` of the
2N × 2N Hamiltonian, then Ω, fields and N at every μ of the study's grid (``sdlib.datagen``
recipes: square 30 × 30, 12 values of μ, T_e = 0.05; triangular 36 × 36, 5 values, T_e = 0.1).
Frames are random unit spins (the cost does not depend on the texture). Each batch is timed by
the wall clock and the process CPU clock after one untimed warm-up; the table row gives frames per
hour from the median wall time. Usage::

    python benchmarks/bench_datagen.py [--study square] [--frames 3] [--batch 1] [--threads 2] [--device cpu]
"""
import argparse
import os
import platform
import statistics
from datetime import date

import torch

from sdlib import ExactSolver, random_spins
from sdlib.datagen import STUDIES
from sdlib.timing import interleaved


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="square", choices=sorted(STUDIES))
    ap.add_argument("--L", type=int, default=None, help="lattice size (default: the recipe's reference size)")
    ap.add_argument("--frames", type=int, default=3, help="timed batches (after one warm-up)")
    ap.add_argument("--batch", type=int, default=1, help="frames per grand_labels call")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = STUDIES[args.study]
    if args.L is not None:
        recipe = recipe.replace(L=args.L)
    solver = ExactSolver(recipe.label_model())
    spins = random_spins(recipe.n_sites, (args.batch,), seed=0, device=args.device)
    times = interleaved({"label": lambda: solver.grand_labels(spins, recipe.mus, recipe.kT)}, args.frames,
                        clock="both")["label"]
    wall, cpu = statistics.median(times["wall"]), statistics.median(times["cpu"])
    load = os.getloadavg()[0]
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{platform.machine()}, {args.threads} threads"
    print(f"| {recipe.kind} {recipe.L}x{recipe.L}, {len(recipe.mus)} μ, T_e = {recipe.kT:g} | {args.batch} "
          f"| {wall / args.batch:.2f} s | {cpu / args.batch:.2f} s | {3600 * args.batch / wall:.0f} "
          f"| {where}, load {load:.1f} | {date.today()} |")


if __name__ == "__main__":
    main()
