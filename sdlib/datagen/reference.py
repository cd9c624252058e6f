"""Exact reference dynamics: LLG quenches driven by exact diagonalisation, kept resumably, and
replayed by any force field from the same initial state and the same thermal noise.

A network is judged twice: on the torques of held-out frames (``committee.heldout_errors``), and
on what the dynamics it drives does. The second needs exact trajectories. One reference quench
starts from ``random_spins(N, seed=s)`` and runs ``LLG(ExactSolver(recipe.dynamics_model()),
dt=recipe.dt, alpha=recipe.alpha, kT=bath_kT, seed=s)`` (semi-implicit midpoint), recording

- ``corr``: the nearest-neighbour correlation ⟨S_i·S_j⟩ and the energy per site (the free energy
  F/N at fixed filling), every ``corr_every`` steps;
- ``spins``: the whole configuration (float64) every ``spins_every`` steps, the initial one included.

The file of a quench, ``<out_dir>/seed<s>.pt``, IS the integrator's checkpoint
(``LLG.run(checkpoint=...)``: spins, step, random stream, the records above), written atomically
every ``checkpoint_every`` steps: a killed run loses at most that many steps, and
:func:`run_reference` continues every seed up to ``t_end`` in later calls (on a later day, or on a
GPU window: ``minutes`` stops it at the first checkpoint after the deadline). Reading it needs no
pickle: ``torch.load(weights_only=True)``.

:func:`replay` runs another force field from the file's initial state with the file's LLG
parameters and seed, on the CPU. The integrator of a reference quench and its random stream
always live on the CPU, also when the exact solver runs on a GPU (``device``: the spins go there
for each evaluation, 900 × 3 numbers, and the fields come back), because ``torch.Generator``
streams differ between CPU and CUDA: so the replay draws the same thermal noise draw for draw,
and the two trajectories differ only through the fields, wherever the reference was made. (A quench
continued on another device stays the same run; its fields differ from the first device's at
round-off.) Cost: one 30 × 30 exact evaluation is 2.5–4 s on this machine's cores (31 ms on an
H200), two per step.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from .. import analysis
from ..analysis import nn_correlation
from ..dynamics import LLG, FunctionObserver
from ..electrons.ed import ExactSolver
from ..forcefield import ForceFieldOutput
from ..model import random_spins

__all__ = ["run_reference", "read_reference", "replay", "replay_chirality", "reference_paths"]

CORR_EVERY = 5  # steps between records of ⟨S_i·S_j⟩ and F/N (0.25 ħ/t at dt = 0.05)
SPINS_EVERY = 50  # steps between kept configurations (2.5 ħ/t at dt = 0.05)
CHECKPOINT_EVERY = 10  # steps between checkpoints (about a minute of exact 30 × 30 work on one core)
CHUNK = 2  # checkpoints per call of LLG.run (each call starts with one extra field evaluation)


def _observers(lattice, corr_every: int, spins_every: int) -> list:
    n = lattice.n_sites
    corr = FunctionObserver(lambda s, o: torch.stack([nn_correlation(s, lattice), o.energy / n]).double(),
                            every=corr_every, name="corr")
    spins = FunctionObserver(lambda s, o: s.double(), every=spins_every, name="spins")
    return [corr, spins]


def _steps(t_end: float, dt: float) -> int:
    if not (isinstance(t_end, (int, float)) and math.isfinite(t_end) and t_end > 0):
        raise ValueError(f"t_end must be a finite time > 0 (units ħ/t), got {t_end!r}")
    return int(round(t_end / dt))


class _OnDevice:
    """``ff`` evaluated on ``device`` for spins that live on the CPU (results back on the CPU)."""

    def __init__(self, ff, device):
        self.ff, self.device = ff, torch.device(device)

    def __call__(self, spins):
        out = self.ff(spins.to(self.device))
        cpu = lambda x: None if x is None else x.cpu()
        return ForceFieldOutput(cpu(out.energy), cpu(out.fields), cpu(out.number), cpu(out.mu))


def reference_paths(out_dir) -> list[Path]:
    """The quench files of a reference folder, by seed."""
    return sorted(Path(out_dir).glob("seed*.pt"), key=lambda p: int(p.stem[4:]))


def run_reference(recipe, out_dir, seeds, t_end: float, bath_kT: float, minutes: float | None = None,
                  device=None, corr_every: int = CORR_EVERY, spins_every: int = SPINS_EVERY,
                  checkpoint_every: int = CHECKPOINT_EVERY, log=print) -> dict:
    """Run (or continue) the exact quench of every seed in ``seeds`` up to ``t_end``; returns
    ``{seed: time reached}``. ``minutes``: no new chunk of ``CHUNK · checkpoint_every`` steps starts
    after that much wall time (the call's first chunk always runs), so the call ends within about
    one chunk of it."""
    if minutes is not None and not minutes > 0:
        raise ValueError(f"minutes must be > 0 or None, got {minutes!r}")
    if not (isinstance(bath_kT, (int, float)) and bath_kT >= 0):
        raise ValueError(f"bath_kT must be a temperature >= 0 (units t), got {bath_kT!r}")
    n_steps = _steps(t_end, recipe.dt)
    model = recipe.dynamics_model()
    lat, solver = model.lattice, ExactSolver(model)
    if device is not None and torch.device(device).type != "cpu":
        solver = _OnDevice(solver, device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    deadline = None if minutes is None else time.monotonic() + 60.0 * minutes
    reached, progressed = {}, False  # the first chunk of a call always runs
    for s in seeds:
        path = out_dir / f"seed{int(s)}.pt"
        spins0 = random_spins(lat.n_sites, seed=int(s))
        done = torch.load(path, weights_only=True)["step"] if path.exists() else 0
        while done < n_steps and (deadline is None or time.monotonic() < deadline or not progressed):
            t0, target = time.perf_counter(), min(n_steps, done + CHUNK * checkpoint_every)
            llg = LLG(solver, dt=recipe.dt, alpha=recipe.alpha, kT=bath_kT, seed=int(s))
            llg.run(spins0, target, observers=_observers(lat, corr_every, spins_every), checkpoint=path,
                    checkpoint_every=checkpoint_every)
            log(f"seed {s}: t = {target * recipe.dt:g} of {t_end:g} "
                f"({(time.perf_counter() - t0) / max(target - done, 1):.2f} s per step)")
            done, progressed = target, True
        reached[int(s)] = done * recipe.dt
    return reached


def read_reference(path) -> dict:
    """One quench file as arrays: ``t`` [R], ``corr`` [R], ``energy`` [R] (F/N), ``spins_t`` [K],
    ``spins`` [K, N, 3], ``params`` (the LLG's), ``t_reached``."""
    state = torch.load(path, weights_only=True)
    obs = {o["name"]: o for o in state["observers"]}
    return _arrays(obs["corr"], obs["spins"], state["params"], state["step"] * state["params"]["dt"])


def _arrays(corr: dict, spins: dict, params: dict, t_reached: float) -> dict:
    """:func:`read_reference`'s arrays from the two records (``Observer.state_dict`` plus ``every``)."""
    c = torch.stack(corr["values"])
    return {"t": torch.tensor(corr["times"], dtype=torch.float64), "corr": c[:, 0], "energy": c[:, 1],
            "spins_t": torch.tensor(spins["times"], dtype=torch.float64), "spins": torch.stack(spins["values"]),
            "params": params, "t_reached": t_reached, "every": {"corr": corr["every"], "spins": spins["every"]}}


def replay(ff, path, lattice, t_end: float | None = None, progress: bool = False, perturb: float = 0.0,
           perturb_seed: int = 0) -> dict:
    """Run ``ff`` from the reference quench's initial state with its LLG parameters and seed, to
    ``t_end`` (default: as far as the reference got); returns :func:`read_reference`'s arrays.

    ``perturb`` > 0 first adds ``perturb`` times a standard normal vector (its own stream, seeded by
    ``perturb_seed``) to every initial spin and normalises it again: a replay with the same force field
    and a perturbed start measures how much the observables depend on the details of one trajectory,
    the yardstick for a force field's difference from the reference."""
    if not (isinstance(perturb, (int, float)) and math.isfinite(perturb) and 0 <= perturb <= 1):
        raise ValueError(f"perturb must be a number in [0, 1] (size of the change of each spin), got {perturb!r}")
    ref = read_reference(path)
    p = ref["params"]
    t_end = ref["t_reached"] if t_end is None else t_end
    if t_end > ref["t_reached"] + 1e-9:
        raise ValueError(f"t_end = {t_end} lies beyond the reference quench ({ref['t_reached']:g} in {path})")
    spins0 = ref["spins"][0]
    if perturb > 0:
        g = torch.Generator().manual_seed(int(perturb_seed))
        spins0 = spins0 + perturb * torch.randn(spins0.shape, generator=g, dtype=spins0.dtype)
        spins0 = spins0 / spins0.norm(dim=-1, keepdim=True)
    spins0 = spins0.to(dtype=ff.dtype if hasattr(ff, "dtype") else torch.float64)
    llg = LLG(ff, dt=p["dt"], alpha=p["alpha"], kT=p["kT"], seed=p["seed"], method=p["method"], progress=progress)
    obs = _observers(lattice, ref["every"]["corr"], ref["every"]["spins"])
    llg.run(spins0, _steps(t_end, p["dt"]), observers=obs)
    return _arrays(*({"every": o.every, **o.state_dict()} for o in obs), p, t_end)


def replay_chirality(ff, path, lattice, t_end: float | None = None, perturb: float = 0.0,
                     perturb_seed: int = 0) -> dict:
    """A triangular quench's chiral domains, exact against ``ff``: :func:`replay` from the quench's
    initial state (``perturb``, ``perturb_seed`` as there), and on the stored configurations of both
    the chirality correlation length (``analysis.correlation_length`` of ``analysis.chirality``) and
    ⟨|χ|⟩. Returns ``seed``, ``t`` [K], ``L_exact``, ``L_net``, ``chi_exact``, ``chi_net`` (NumPy [K])
    and ``last`` (the two chirality fields at the last stored time, tensors)."""
    ref = read_reference(path)
    net = replay(ff, path, lattice, t_end=t_end, perturb=perturb, perturb_seed=perturb_seed)
    n = len(net["spins_t"])
    if not torch.allclose(net["spins_t"], ref["spins_t"][:n]):
        raise RuntimeError(f"the replay stored other times than {path}: its every = {ref['every']} is not honoured")
    chi_e, chi_n = analysis.chirality(ref["spins"][:n], lattice), analysis.chirality(net["spins"], lattice)
    return {"seed": ref["params"]["seed"], "t": net["spins_t"].numpy(),
            "L_exact": analysis.correlation_length(chi_e, lattice).cpu().numpy(),
            "L_net": analysis.correlation_length(chi_n, lattice).cpu().numpy(),
            "chi_exact": chi_e.abs().mean(-1).cpu().numpy(), "chi_net": chi_n.abs().mean(-1).cpu().numpy(),
            "last": (chi_e[-1], chi_n[-1])}
