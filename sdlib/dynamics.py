"""Stochastic Landau–Lifshitz–Gilbert dynamics driven by any force field.

Equation of motion (Landau–Lifshitz form, γ = 1, ħ = 1, PHYSICS.md):

    dS_i/dt = -S_i × (H_i + h_i) - α S_i × (S_i × (H_i + h_i)) = Ω_i × S_i,
    Ω_i = B_i + α S_i × B_i,  B_i = H_i + h_i,

with H = ``ff(spins).fields`` and a Gaussian white-noise field h of per-step standard deviation
√(2 α kT / ((1 + α²) Δt)) per component, drawn once per step and held fixed over it
(Stratonovich). This makes the Boltzmann distribution stationary for the equation exactly as
written (no 1/(1+α²) prefactor on the deterministic part).

Integrators (both use two force evaluations per step):

* ``"midpoint"`` — semi-implicit midpoint rule (Mentink et al., J. Phys.: Condens. Matter 22,
  176001 (2010)): S' = S + (Δt/2) Ω̄ × (S + S'), solved per spin in closed form by the Cayley
  rotation, so |S'| = |S| exactly. Ω̄ is evaluated at the midpoint (S + S̃)/2 of a predictor S̃
  (itself a Cayley step with Ω(S)), normalised before the force field sees it.
  ``corrector_steps`` > 1 iterates the midpoint (one more force evaluation each).
* ``"heun"`` — stochastic Heun predictor–corrector, each stage renormalised to |S| = 1.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .io import atomic_write

__all__ = ["LLG", "Observer", "EnergyObserver", "MagnetizationObserver", "FunctionObserver", "cayley_step"]


def cayley_step(spins: torch.Tensor, omega: torch.Tensor, dt: float) -> torch.Tensor:
    """Solve S' = S + (dt/2) Ω × (S + S') for every spin: a rotation, |S'| = |S| exactly.

    With a = (dt/2) Ω: S' = [(1 - a²) S + 2 a × S + 2 (a·S) a] / (1 + a²).
    """
    a = 0.5 * dt * omega
    a2 = (a * a).sum(-1, keepdim=True)
    adots = (a * spins).sum(-1, keepdim=True)
    return ((1 - a2) * spins + 2 * torch.linalg.cross(a, spins, dim=-1) + 2 * adots * a) / (1 + a2)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


class Observer:
    """Records ``value(spins, out)`` every ``every`` steps into ``steps``, ``times``, ``values``."""

    name = "observer"

    def __init__(self, every: int = 1, name: str | None = None):
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.every = every
        self.name = name or self.name
        self.steps, self.times, self.values = [], [], []

    def value(self, spins, out):
        raise NotImplementedError

    def __call__(self, step: int, time: float, spins, out) -> None:
        if step % self.every == 0:
            self.steps.append(step)
            self.times.append(time)
            v = self.value(spins, out)
            self.values.append(v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v)

    def stacked(self) -> torch.Tensor:
        """The recorded values as one tensor ``[n_records, ...]``."""
        return torch.stack([torch.as_tensor(v) for v in self.values])

    def state_dict(self) -> dict:
        return {"steps": list(self.steps), "times": list(self.times), "values": list(self.values)}

    def load_state_dict(self, d: dict) -> None:
        self.steps, self.times, self.values = list(d["steps"]), list(d["times"]), list(d["values"])


class EnergyObserver(Observer):
    name = "energy"

    def value(self, spins, out):
        return out.energy


class MagnetizationObserver(Observer):
    """Mean spin vector (Σ_i S_i)/N."""

    name = "magnetization"

    def value(self, spins, out):
        return spins.mean(-2)


class FunctionObserver(Observer):
    """Any ``fn(spins, out)`` returning a tensor or a number."""

    def __init__(self, fn, every: int = 1, name: str = "function"):
        super().__init__(every, name)
        self.fn = fn

    def value(self, spins, out):
        return self.fn(spins, out)


class LLG:
    """Stochastic LLG integrator; owns the seeded random stream and the step counter.

    ``ff`` is any callable ``ff(spins) -> out`` with ``out.energy`` and ``out.fields``.
    Non-finite spins (a too large ``dt``) raise ``FloatingPointError``; the check reads a flag from
    the device, so on a GPU it runs every ``check_every`` steps (default 32; 1 on the CPU) and before
    every checkpoint, never saving a non-finite state.
    """

    METHODS = ("midpoint", "heun")

    def __init__(self, ff, dt: float, alpha: float, kT: float = 0.0, seed: int = 0, method: str = "midpoint",
                 progress: bool = False, corrector_steps: int = 1, check_every: int | None = None):
        if not callable(ff):
            raise ValueError("ff must be callable: ff(spins) -> object with .energy and .fields")
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
        if not (isinstance(kT, (int, float)) and math.isfinite(kT) and kT >= 0):
            raise ValueError(f"kT must be a finite number >= 0, got {kT!r}")
        if kT > 0 and alpha == 0:
            raise ValueError("kT > 0 needs damping: use alpha > 0 for thermal runs (fluctuation-dissipation)")
        if method not in self.METHODS:
            raise ValueError(f"method must be one of {self.METHODS}, got {method!r}")
        if not (isinstance(corrector_steps, int) and corrector_steps >= 1):
            raise ValueError(f"corrector_steps must be an integer >= 1, got {corrector_steps!r}")
        if check_every is not None and not (isinstance(check_every, int) and check_every >= 1):
            raise ValueError(f"check_every must be an integer >= 1 or None, got {check_every!r}")
        self.ff, self.dt, self.alpha, self.kT = ff, float(dt), float(alpha), float(kT)
        self.seed, self.method, self.progress, self.corrector_steps = int(seed), method, progress, corrector_steps
        self.noise_std = math.sqrt(2 * self.alpha * self.kT / ((1 + self.alpha**2) * self.dt))
        self.step_count = 0
        self.check_every = check_every
        self._finite: torch.Tensor | None = None  # all spins finite since the last check (on the device)
        self._checked = 0  # step count of the last check
        self._gen: torch.Generator | None = None

    # ------------------------------------------------------------------ pieces
    def params(self) -> dict:
        return {"dt": self.dt, "alpha": self.alpha, "kT": self.kT, "seed": self.seed, "method": self.method,
                "corrector_steps": self.corrector_steps}

    def _generator(self, device) -> torch.Generator:
        if self._gen is None:
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen

    def _fields(self, spins: torch.Tensor):
        out = self.ff(spins)
        if getattr(out, "fields", None) is None or out.fields.shape != spins.shape:
            got = None if getattr(out, "fields", None) is None else list(out.fields.shape)
            raise ValueError(f"the force field must return .fields of shape {list(spins.shape)}, got {got}")
        return out

    def _omega(self, spins, fields, noise):
        b = fields + noise if noise is not None else fields
        return b + self.alpha * torch.linalg.cross(spins, b, dim=-1)

    def _noise(self, spins):
        if self.kT == 0:
            return None
        g = self._generator(spins.device)
        return self.noise_std * torch.randn(spins.shape, generator=g, device=spins.device, dtype=spins.dtype)

    def step(self, spins: torch.Tensor, out=None):
        """One step from ``spins`` (with ``out = ff(spins)`` if known); returns ``(new_spins, ff(new_spins))``."""
        out = self._fields(spins) if out is None else out
        noise = self._noise(spins)
        w0 = self._omega(spins, out.fields, noise)
        if self.method == "midpoint":
            new = cayley_step(spins, w0, self.dt)
            for _ in range(self.corrector_steps):
                mid = _unit(0.5 * (spins + new))
                w = self._omega(mid, self._fields(mid).fields, noise)
                new = cayley_step(spins, w, self.dt)
        else:
            k1 = torch.linalg.cross(w0, spins, dim=-1)
            pred = _unit(spins + self.dt * k1)
            k2 = torch.linalg.cross(self._omega(pred, self._fields(pred).fields, noise), pred, dim=-1)
            new = _unit(spins + 0.5 * self.dt * (k1 + k2))
        self.step_count += 1
        finite = torch.isfinite(new).all()
        self._finite = finite if self._finite is None else self._finite & finite
        every = self.check_every or (1 if new.device.type == "cpu" else 32)
        if self.step_count - self._checked >= every:
            self.check_finite()
        return new, self._fields(new)

    def check_finite(self) -> None:
        """Raise ``FloatingPointError`` if a step since the last check made non-finite spins."""
        if self._finite is not None and not bool(self._finite):
            first = self._checked + 1
            where = f"at step {first}" if first == self.step_count else f"in steps {first}..{self.step_count}"
            raise FloatingPointError(f"non-finite spins {where}: reduce dt (now {self.dt})")
        self._finite, self._checked = None, self.step_count

    # ------------------------------------------------------------------ runs
    def run(self, spins: torch.Tensor, n_steps: int, observers=(), checkpoint=None, checkpoint_every: int = 100):
        """Integrate until the step counter reaches ``n_steps``; returns the final spins.

        Observers are called at every step that is a multiple of their ``every`` (the initial state
        included). With ``checkpoint=path`` the state — spins, step, random stream, observer data,
        parameters — is written atomically every ``checkpoint_every`` steps and at the end; calling
        ``run`` again with the same path (on a new ``LLG`` with the same parameters) resumes from it
        and ends bit-identical to an uninterrupted run. The ``spins`` argument is then ignored.
        """
        if not (isinstance(n_steps, int) and n_steps >= 0):
            raise ValueError(f"n_steps must be an integer >= 0, got {n_steps!r}")
        if not (isinstance(checkpoint_every, int) and checkpoint_every >= 1):
            raise ValueError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
        observers = list(observers)
        if checkpoint is not None and Path(checkpoint).exists():
            spins = self._resume(Path(checkpoint), spins, observers)
        out = self._fields(spins)
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, initial=self.step_count, disable=not self.progress, desc="LLG", unit="step")
        while True:
            for obs in observers:
                if not (obs.steps and obs.steps[-1] == self.step_count):
                    obs(self.step_count, self.step_count * self.dt, spins, out)
            if checkpoint is not None and (self.step_count % checkpoint_every == 0 or self.step_count == n_steps):
                self.check_finite()
                self._save(Path(checkpoint), spins, observers)
            if self.step_count >= n_steps:
                break
            spins, out = self.step(spins, out)
            bar.update(1)
        bar.close()
        self.check_finite()
        return spins

    @property
    def time(self) -> float:
        return self.step_count * self.dt

    def _save(self, path: Path, spins, observers) -> None:
        state = {
            "spins": spins.detach().cpu(), "step": self.step_count, "params": self.params(),
            "n_sites": spins.shape[-2], "rng": self._gen.get_state().cpu() if self._gen is not None else None,
            "observers": [{"name": o.name, "every": o.every, **o.state_dict()} for o in observers],
        }
        with atomic_write(path) as fh:
            torch.save(state, fh)

    def _resume(self, path: Path, spins, observers):
        state = torch.load(path, weights_only=True)
        mine = self.params()
        if state["params"] != mine or state["n_sites"] != spins.shape[-2]:
            raise ValueError(
                f"checkpoint {path} was written with {state['params']} on {state['n_sites']} sites; this run has "
                f"{mine} on {spins.shape[-2]} sites. Use another checkpoint path or the same parameters"
            )
        names = [o["name"] for o in state["observers"]]
        if names != [o.name for o in observers]:
            raise ValueError(f"checkpoint {path} holds observers {names}; pass the same observers to resume")
        every = [d.get("every", o.every) for o, d in zip(observers, state["observers"])]
        if every != [o.every for o in observers]:
            raise ValueError(f"checkpoint {path} recorded its observers every {every} steps, this run asks for "
                             f"{[o.every for o in observers]}; pass observers with the same every to resume")
        for o, d in zip(observers, state["observers"]):
            o.load_state_dict(d)
        self.step_count = self._checked = state["step"]
        if state["rng"] is not None:
            self._generator(spins.device).set_state(state["rng"])
        return state["spins"].to(device=spins.device, dtype=spins.dtype)
