"""KPM scaling: time per field evaluation vs N (triangular lattice), and where KPM overtakes ED.

One ``KPMSolver`` evaluation (fixed μ, probing vectors, ``--moments`` moments) is timed for
L × L triangular lattices, L = 16 … 256, and one ``ExactSolver`` evaluation for L = 12 … 30, in the
same run. Fits t = c·N^p to each, reports the exponents, the KPM throughput in
nnz(H)·moments·vectors per second (nnz = 2N(z + 2): hopping plus the on-site 2 × 2 blocks), and the
N where the two fits cross. Sizes are skipped once the projected time of the next one exceeds the
remaining ``--budget`` seconds. Writes a Markdown table to ``--out``.

Usage: ``python benchmarks/bench_kpm.py [--moments 200] [--distance 4] [--budget 270] [--threads 1]``.
Each size is timed as the best of up to three runs.
"""
import argparse
import math
import os
import platform
import time
from datetime import date

import numpy as np
import torch

from sdlib import ExactSolver, SDModel, lattice, random_spins
from sdlib.electrons.kpm import KPMSolver

PARAMS = dict(t=1.0, J=2.0, mu=-1.5, kT=0.1)


def timed(ff, S):
    """Best of up to three runs (the first doubles as warm-up); a single run when it takes > 2 s."""
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        ff(S)
        best = min(best, time.perf_counter() - t0)
        if best > 2.0:
            break
    return best


def run_sizes(sizes, make, deadline, exponent):
    """Time ``make(L)(spins)`` for increasing L while the projected time fits before ``deadline``."""
    rows, last = [], None
    for L in sizes:
        if last is not None:
            projected = last[1] * (L / last[0]) ** (2 * exponent)
            if time.perf_counter() + projected > deadline:
                break
        ff = make(L)
        dt = timed(ff, random_spins(L * L, seed=0))
        rows.append((L, dt, ff))
        last = (L, dt)
    return rows


def fit(rows):
    N = np.array([r[0] ** 2 for r in rows], dtype=float)
    t = np.array([r[1] for r in rows])
    p, logc = np.polyfit(np.log(N), np.log(t), 1)
    return p, math.exp(logc)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--moments", type=int, default=200)
    ap.add_argument("--distance", type=int, default=4)
    ap.add_argument("--kpm-sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--ed-sizes", type=int, nargs="+", default=[12, 18, 24, 30])
    ap.add_argument("--budget", type=float, default=270.0, help="seconds for the whole run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both solvers")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results_kpm.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start, load0 = time.perf_counter(), os.getloadavg()[0]
    deadline = start + args.budget
    ed = run_sizes(args.ed_sizes, lambda L: ExactSolver(SDModel(lattice.triangular(L), **PARAMS)),
                   start + 0.3 * args.budget, 3.0)
    kpm = run_sizes(args.kpm_sizes, lambda L: KPMSolver(SDModel(lattice.triangular(L), **PARAMS),
                                                        n_moments=args.moments, probing=args.distance), deadline, 1.0)
    load1 = os.getloadavg()[0]
    p_k, c_k = fit(kpm)
    p_e, c_e = fit(ed)
    n_cross = (c_e / c_k) ** (1.0 / (p_k - p_e))
    lines = [
        "# KPM benchmark (`benchmarks/bench_kpm.py`)", "",
        f"Triangular lattice, t = 1, J = {PARAMS['J']}, μ = {PARAMS['mu']}, kT = {PARAMS['kT']}, random spins; "
        f"KPM with {args.moments} moments, {kpm[0][2].kernel or 'no'} kernel (the cost is the same with either), "
        f"probing distance {args.distance}, complex128. "
        f"One field evaluation each (energy + fields).", "",
        f"Machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, date {date.today()}, "
        f"load average {load0:.1f} at start and {load1:.1f} at end (timings on a loaded machine are inflated).", "",
        "| solver | L | N | vectors | time (s) | nnz·moments·vectors / s |", "|---|---|---|---|---|---|",
    ]
    for L, dt, _ in ed:
        lines.append(f"| ED | {L} | {L * L} | – | {dt:.3f} | – |")
    for L, dt, ff in kpm:
        R = ff.estimator.n_columns
        nnz = 2 * L * L * (6 + 2)
        lines.append(f"| KPM | {L} | {L * L} | {R} | {dt:.3f} | {nnz * args.moments * R / dt:.3g} |")
    lines += [
        "", f"Fitted exponents t ∝ N^p: KPM p = {p_k:.2f} (L = {kpm[0][0]}…{kpm[-1][0]}), "
        f"ED p = {p_e:.2f} (L = {ed[0][0]}…{ed[-1][0]}).",
        f"The fits cross at N ≈ {n_cross:.0f} (L ≈ {math.sqrt(n_cross):.0f}): KPM is faster above.",
        f"Skipped for the time budget of {args.budget:.0f} s: KPM L = "
        f"{[L for L in args.kpm_sizes if L > kpm[-1][0]] or 'none'}, ED L = {[L for L in args.ed_sizes if L > ed[-1][0]] or 'none'}.",
        f"Total wall time {time.perf_counter() - start:.0f} s.", "",
    ]
    text = "\n".join(lines)
    print(text)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
