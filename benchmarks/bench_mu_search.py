"""The μ* search of the square network at fixed filling, early and late in a quench.

    PYTHONPATH=. python benchmarks/bench_mu_search.py [--steps 6] [--threads 1] [--model STEM ...]

Each evaluation of the canonical square network solves N(S, μ*) = N_e (``ensemble.find_mu``,
started at the previous μ*). Early in a quench μ* lies in a band and the search takes a few
evaluations of N(μ); late, when the holes sit in ferromagnetic clusters of a Néel background,
μ* lies in a gap of the spectrum and N changes by ~10⁻³ electrons per grid cell of the search.
This script counts the evaluations of N(μ) per force-field call and times the calls along a few
LLG steps (the production run's parameters: dt = 0.05, α = 0.5, k_BT = 0.01, midpoint) from

* ``random`` — random spins on 128 × 128 (the start of a quench);
* ``late`` — the final spins of chapter 05's production run (4 quenches of 128 × 128 at t = 200,
  ``book/runs/05-square-phase-separation/final_spins.safetensors``),

in float32 and float64 (4 configurations at once, as in the production run). Prints a Markdown
table: N(μ) evaluations per call (mean, max), ms per call and the ms of it spent in N(μ).
``--model STEM`` (repeatable) measures saved square networks instead of the shipped one, e.g. a
plain μ-input head against a level head (``sdlib.levelhead``) trained on the same data
(``scripts/compare_heads.py``).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

import sdlib.ensemble as ensemble
from sdlib import LLG, lattice, random_spins
from sdlib.nn import MLForceField
from sdlib.results import final_spins

LATE_RUN = "05-square-phase-separation"  # its final_spins.safetensors


class CountingSearch:
    """Wraps ``ensemble.find_mu`` and counts the evaluations of N(μ) it makes."""

    def __init__(self):
        self.calls, self.seconds, self._find = 0, 0.0, ensemble.find_mu

    def __call__(self, number, *args, **kwargs):
        def counted(mu):
            self.calls += 1
            t0 = time.perf_counter()
            n = number(mu)
            self.seconds += time.perf_counter() - t0
            return n

        return self._find(counted, *args, **kwargs)


def textures(L: int, batch: int) -> dict:
    late = final_spins(LATE_RUN)
    if late.shape[-2] != L * L:
        raise ValueError(f"the final spins of {LATE_RUN} hold {late.shape[-2]} sites, not {L} x {L}")
    return {"random": random_spins(L * L, batch=batch, seed=0), "late": late[:batch]}


def load(model: str, L: int, dtype) -> MLForceField:
    if model == "shipped":
        return MLForceField.pretrained("square-double-exchange", lattice.square(L), dtype=dtype)
    return MLForceField.load(model, lattice.square(L), dtype=dtype)


def measure(spins: torch.Tensor, dtype, steps: int, L: int, model: str = "shipped"):
    """(N(μ) evaluations, seconds, seconds in N(μ)) of each force-field call along ``steps`` LLG steps."""
    ff = load(model, L, dtype)
    llg = LLG(ff, dt=0.05, alpha=0.5, kT=0.01, seed=0)
    s = spins.to(dtype)
    s = s / s.norm(dim=-1, keepdim=True)
    counter = CountingSearch()
    ensemble.find_mu = counter
    try:
        out = ff(s)  # the first call searches the whole trained μ range: not counted
        calls, seconds, in_number = [], [], []
        wrapped = llg.ff

        def timed(x):
            counter.calls, counter.seconds = 0, 0.0
            t0 = time.perf_counter()
            r = wrapped(x)
            seconds.append(time.perf_counter() - t0)
            calls.append(counter.calls)
            in_number.append(counter.seconds)
            return r

        llg.ff = timed
        for _ in range(steps):
            s, out = llg.step(s, out)
    finally:
        ensemble.find_mu = counter._find
    return calls, seconds, in_number


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6, help="LLG steps per texture and dtype (2 calls each)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", action="append", default=None, help="saved square network (stem); default: the shipped one")
    a = p.parse_args(argv)
    if a.steps < 1:
        p.error(f"--steps must be >= 1, got {a.steps}")
    torch.set_num_threads(a.threads)
    L, batch = 128, 4
    models = a.model or ["shipped"]
    print(f"{batch} x {L}^2, {a.steps} LLG steps, {a.threads} thread(s), {platform.machine()}, torch {torch.__version__}\n")
    print("| model | texture | dtype | N(μ) evaluations per call (mean / max) | ms per call (median) | ms in N(μ) "
          "(median) | µs per site |")
    print("|---|---|---|---|---|---|---|")
    for model in models:
        label = "shipped" if model == "shipped" else Path(model).name
        for name, spins in textures(L, batch).items():
            for dtype in (torch.float32, torch.float64):
                try:
                    calls, seconds, in_number = measure(spins, dtype, a.steps, L, model)
                except ValueError as e:  # a network whose N(μ) does not cross N_e in its trained range
                    print(f"| {label} | {name} | {str(dtype).removeprefix('torch.')} | no μ*: {e} | | | |", flush=True)
                    continue
                ms = 1e3 * statistics.median(seconds)
                print(f"| {label} | {name} | {str(dtype).removeprefix('torch.')} | {statistics.mean(calls):.1f} / "
                      f"{max(calls)} | {ms:.0f} | {1e3 * statistics.median(in_number):.0f} | "
                      f"{1e3 * ms / (batch * L * L):.1f} |", flush=True)


if __name__ == "__main__":
    main()
