"""Quenches that make candidate frames: exact-LLG seed runs and network-driven exploration.

A quench starts from uniform random unit spins (``sdlib.random_spins``) and relaxes under LLG
(``sdlib.dynamics.LLG``, semi-implicit midpoint) in a bath at temperature ``bath_kT``; the force
field that drives it is any ``ForceField``: the exact solver (seed) or a trained network
(exploration). :func:`quench_frames` runs ``recipe.quenches`` quenches per bath temperature as one
batch ``[B, N, 3]`` (one batched solve per force-field call, on the spins' device) and keeps the
frames at ``recipe.frame_times`` (early, middle and late frames of the coarsening window).
:func:`generate_quench_data` writes one trajectory to an HDF5 file with checkpoints, as the shipped
models' reference data were made.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..dynamics import LLG, Observer
from ..io import TrajectoryWriter
from ..model import random_spins

__all__ = ["generate_quench_data", "quench_frames"]


def generate_quench_data(ff, n_sites: int, path, *, n_steps: int, every: int, dt: float, alpha: float, kT: float,
                         seed: int, spins0=None, method: str = "midpoint", params: dict | None = None,
                         progress: bool = False) -> Path:
    """Quench from random unit spins (seeded) into a bath at ``kT``; save (spins, fields, energy) every ``every`` steps.

    Killed runs resume: the integrator checkpoints to ``<path>.ckpt`` and the trajectory continues
    in ``<path>.part``; frames already stored are not written twice. Returns the finished path.
    """
    if spins0 is None:
        spins0 = random_spins(n_sites, seed=seed)
    llg = LLG(ff, dt=dt, alpha=alpha, kT=kT, seed=seed, method=method, progress=progress)
    meta = {**(params or {}), **llg.params(), "n_steps": n_steps, "every": every, "init": "random"}

    class _Writer(Observer):
        name = "writer"

        def __call__(self, step, time, spins, out):
            if step % self.every == 0 and step > writer.last_step:
                writer.append(step, time, spins, out.fields, out.energy)

    ckpt = Path(str(path) + ".ckpt")
    with TrajectoryWriter(path, n_sites, meta) as writer:
        llg.run(spins0, n_steps, observers=[_Writer(every)], checkpoint=ckpt, checkpoint_every=10 * every)
    ckpt.unlink()
    return Path(path)


def frame_steps(recipe) -> list[int]:
    """The LLG steps of the recipe's frame times (rounded to the nearest step, at least 1, distinct)."""
    steps = sorted({max(1, round(t / recipe.dt)) for t in recipe.frame_times})
    return steps


def quench_frames(ff, recipe, seed: int, n_quenches: int | None = None, device=None, dtype=torch.float64,
                  progress: bool = False, deadline: float | None = None) -> dict:
    """Frames of ``n_quenches`` (default ``recipe.quenches``) quenches per bath temperature driven by ``ff``.

    Quench q of bath b starts from ``random_spins(N, seed=seed + 1000·b + q)`` and uses LLG noise
    seed ``seed + 1000·b``. Returns CPU tensors: ``spins [M, N, 3]`` (float64), ``time [M]``,
    ``bath_kT [M]``, ``quench [M]`` (``1000·b + q``), with M = baths × quenches × frames.
    ``deadline`` (a ``time.monotonic()`` value): start no further bath temperature after it (the
    first one always runs).
    """
    n_quenches = recipe.quenches if n_quenches is None else int(n_quenches)
    if n_quenches < 1:
        raise ValueError(f"n_quenches must be >= 1, got {n_quenches}")
    steps = frame_steps(recipe)
    out = {"spins": [], "time": [], "bath_kT": [], "quench": []}
    for b, bath in enumerate(recipe.bath_kT):
        if b > 0 and deadline is not None and time.monotonic() > deadline:
            break
        s = torch.stack([random_spins(recipe.n_sites, seed=seed + 1000 * b + q) for q in range(n_quenches)])
        s = s.to(device=device, dtype=dtype)
        llg = LLG(ff, dt=recipe.dt, alpha=recipe.alpha, kT=bath, seed=seed + 1000 * b, progress=progress)
        f = None
        for target in steps:
            while llg.step_count < target:
                s, f = llg.step(s, f)
            llg.check_finite()  # before the frame is kept (on a GPU the flag is read every few steps)
            out["spins"].append(s.detach().to("cpu", torch.float64))
            out["time"] += [llg.time] * n_quenches
            out["bath_kT"] += [bath] * n_quenches
            out["quench"] += [1000 * b + q for q in range(n_quenches)]
    spins = torch.cat(out["spins"])
    spins = spins / spins.norm(dim=-1, keepdim=True)  # float32 dynamics: back to unit length in float64
    return {"spins": spins, "time": torch.tensor(out["time"], dtype=torch.float64),
            "bath_kT": torch.tensor(out["bath_kT"], dtype=torch.float64),
            "quench": torch.tensor(out["quench"], dtype=torch.long)}
