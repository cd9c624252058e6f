"""Typed recipes of the two studies: the physics of the reference data and how it is gathered.

A :class:`Recipe` fixes everything a data set depends on — lattice and size, t, J, the electron
ensemble (grand canonical at μ, or canonical at filling f) and its temperature T_e, the μ grid of
the grand-canonical labels, the bath temperatures and frame times of the quenches, Δt, α, the
descriptor cutoff — and the settings of an active-learning round (committee size, frames per
round, the uniformly drawn fraction). It is frozen; every value is checked when it is made, and a
bad one raises ``ValueError`` naming the field and its allowed range.

The two studies (the book's chapters 04 and 05; reference physics decided in the project's notes
on locality: T_e > 0 makes the torques local):

* ``SQUARE``: square lattice 30 × 30, J = 6, canonical dynamics at f = 0.485 (N_e = 873),
  T_e = 0.05; labels grand canonical at 12 values of μ in [-6.4, -2.0] (one ``eigh`` each),
  used by a network with μ as input that solves μ* at fixed filling; cutoff 5.1 (√26).
* ``TRIANGULAR``: triangular lattice 36 × 36, J = 2, grand canonical at μ = -2.4194 (mid-gap of
  the tetrahedral state at f = 1/4), T_e = 0.1; labels on five μ spaced 0.2 around it; cutoff 8.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from ..lattice import Lattice
from ..model import SDModel

__all__ = ["Recipe", "SQUARE", "TRIANGULAR", "STUDIES", "study"]

KINDS = ("square", "triangular")


def _bad(name: str, rule: str, value) -> ValueError:
    return ValueError(f"Recipe.{name} {rule}, got {value!r}")


def _finite(name: str, v, lo=None, hi=None, lo_open=False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or v <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise _bad(name, f"must be a finite number in {rng}", v)


def _grid(name: str, values, lo=None, lo_open=False, increasing=True) -> tuple:
    vals = tuple(float(v) for v in values)
    if not vals:
        raise _bad(name, "must hold at least one value", values)
    for v in vals:
        _finite(name, v, lo=lo, lo_open=lo_open)
    if increasing and any(b <= a for a, b in zip(vals, vals[1:])):
        raise _bad(name, "must be strictly increasing", vals)
    return vals


@dataclass(frozen=True)
class Recipe:
    """Physics and data-gathering settings of one study (module docstring). Energies in t, times in ħ/t.

    Physics: ``kind``, ``L``, ``t``, ``J``; exactly one of ``mu`` (grand canonical) or ``filling``
    (canonical, N_e = round(2N·f)); ``kT`` = electron temperature T_e ≥ 0 of the labels and of the
    exact dynamics; ``mus`` = μ grid of the grand-canonical labels (T_e > 0; contains ``mu``).
    Quenches: ``bath_kT`` (one quench family per bath temperature), ``frame_times`` (candidate
    frames of each quench, early to late; the last is the quench duration), ``dt``, ``alpha``.
    Network: ``cutoff`` (< L/2), ``phase_cutoff``, ``hidden``, ``levels`` (0: μ as an input of the
    MLP; K ≥ 1: the level head of ``sdlib.levelhead``, whose N(μ) rises by construction). Active rounds: ``committee`` (≥ 4
    networks), ``quenches`` per bath temperature, ``select`` frames per round of which
    ``uniform_fraction`` are drawn uniformly, ``ordered`` ordered / near-ordered configurations.
    """

    name: str
    kind: str
    L: int
    J: float
    kT: float
    mus: tuple
    bath_kT: tuple
    frame_times: tuple
    cutoff: float
    t: float = 1.0
    mu: float | None = None
    filling: float | None = None
    dt: float = 0.05
    alpha: float = 0.5
    phase_cutoff: float | None = 2.3
    hidden: tuple = (64, 64)
    levels: int = 0
    committee: int = 4
    quenches: int = 2
    select: int = 100
    uniform_fraction: float = 0.25
    ordered: int = 8
    notes: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise _bad("kind", f"must be one of {KINDS}", self.kind)
        if not (isinstance(self.L, int) and self.L >= 2):
            raise _bad("L", "must be an integer >= 2", self.L)
        _finite("cutoff", self.cutoff, lo=1.0, hi=10.0)
        if not self.L > 2 * self.cutoff:
            raise ValueError(f"Recipe.L = {self.L} is below 2·cutoff = {2 * self.cutoff:g}: the neighbourhoods "
                             "would wrap around the torus; use a larger L or a smaller cutoff")
        if self.phase_cutoff is not None:
            _finite("phase_cutoff", self.phase_cutoff, lo=1.0, hi=self.cutoff)
        _finite("t", self.t, lo=0.0, lo_open=True)
        _finite("J", self.J, lo=0.0, lo_open=True)
        _finite("kT", self.kT, lo=0.0)
        if (self.mu is None) == (self.filling is None):
            raise ValueError(f"Recipe.mu / Recipe.filling: give exactly one (grand canonical at mu or canonical "
                             f"at filling), got mu={self.mu!r}, filling={self.filling!r}")
        if self.filling is not None:
            _finite("filling", self.filling, lo=0.0, hi=1.0, lo_open=True)
        object.__setattr__(self, "mus", _grid("mus", self.mus))
        if len(self.mus) > 1 and not self.kT > 0:
            raise _bad("kT", "must be > 0 for labels on a μ grid (Ω smooth in μ)", self.kT)
        if self.mu is not None:
            _finite("mu", self.mu)
            if not self.mus[0] <= self.mu <= self.mus[-1]:
                raise _bad("mu", f"must lie inside the label grid mus = [{self.mus[0]}, {self.mus[-1]}]", self.mu)
        object.__setattr__(self, "bath_kT", _grid("bath_kT", self.bath_kT, lo=0.0, increasing=False))
        object.__setattr__(self, "frame_times", _grid("frame_times", self.frame_times, lo=0.0, lo_open=True))
        _finite("dt", self.dt, lo=0.0, lo_open=True)
        if self.dt > self.frame_times[0]:
            raise _bad("dt", f"must not exceed the first frame time {self.frame_times[0]}", self.dt)
        _finite("alpha", self.alpha, lo=0.0, lo_open=True)
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if not self.hidden or not all(isinstance(h, int) and h >= 1 for h in self.hidden):
            raise _bad("hidden", "must be a non-empty tuple of integers >= 1", self.hidden)
        if self.levels and not self.kT > 0:
            raise _bad("levels", "needs kT > 0 (the levels are filled at the electron temperature)", self.levels)
        for name, lo in (("levels", 0), ("committee", 4), ("quenches", 1), ("select", 1), ("ordered", 0)):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= lo):
                raise _bad(name, f"must be an integer >= {lo}", v)
        _finite("uniform_fraction", self.uniform_fraction, lo=0.0, hi=1.0)

    # ------------------------------------------------------------------ derived
    def replace(self, **changes) -> "Recipe":
        """A checked copy with ``changes`` (e.g. a smaller ``L`` for a dry run)."""
        return dataclasses.replace(self, **changes)

    def with_settings(self, settings) -> "Recipe":
        """A checked copy with ``settings``: strings ``"field=value"`` (command lines), e.g. ``"L=30"``,
        ``"frame_times=0.5,1,2"``, ``"phase_cutoff=none"``; tuples are comma-separated."""
        types = {f.name: f.type for f in dataclasses.fields(self)}
        changes = {}
        for item in settings:
            key, sep, text = str(item).partition("=")
            if not sep or key not in types or key in ("name", "notes"):
                raise ValueError(f"a setting must be field=value with a field of Recipe "
                                 f"({', '.join(k for k in types if k not in ('name', 'notes'))}), got {item!r}")
            changes[key] = _parse(key, types[key], text)
        return self.replace(**changes)

    def dry_run(self) -> "Recipe":
        """The same study on an 8 × 8 lattice with a few frames: the pipeline's steps in seconds on a CPU."""
        cutoff = {"square": 2.3, "triangular": 2.0}[self.kind]
        mus = (self.mus[0], self.mus[len(self.mus) // 2], self.mus[-1]) if len(self.mus) > 2 else self.mus
        return self.replace(L=8, cutoff=cutoff, phase_cutoff=None, mus=tuple(sorted(set(mus))),
                            frame_times=(0.2, 0.5), bath_kT=self.bath_kT[:2], quenches=1, select=6, ordered=2)

    @property
    def n_sites(self) -> int:
        return self.L * self.L

    @property
    def n_electrons(self) -> int | None:
        return None if self.filling is None else int(round(2 * self.n_sites * self.filling))

    def lattice(self) -> Lattice:
        return Lattice(self.kind, self.L)

    def dynamics_model(self) -> SDModel:
        """The electrons of the dynamics: the recipe's ensemble (μ or filling) at T_e."""
        ens = {"mu": self.mu} if self.mu is not None else {"filling": self.filling}
        return SDModel(self.lattice(), t=self.t, J=self.J, kT=self.kT, **ens)

    def label_model(self) -> SDModel:
        """Grand canonical at the first μ of the grid (``grand_labels`` takes the grid itself)."""
        return SDModel(self.lattice(), t=self.t, J=self.J, mu=self.mus[0], kT=self.kT)

    def physics(self) -> dict:
        """The ``physics`` record of a network trained on this recipe's labels (``MLForceField``)."""
        ens = {"mu": self.mu} if self.mu is not None else {"filling": self.filling}
        return {"lattice": self.kind, "L": self.L, "t": self.t, "J": self.J, "kT": self.kT, **ens,
                "mu_range": [self.mus[0], self.mus[-1]]}

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


def _parse(key: str, typ: str, text: str):
    text = text.strip()
    if text.lower() == "none":
        return None
    try:
        if "tuple" in typ:
            return tuple((int if key == "hidden" else float)(v) for v in text.split(",") if v.strip())
        if typ == "int":
            return int(text)
        return text if typ == "str" else float(text)
    except ValueError:
        raise ValueError(f"Recipe.{key} needs a {typ} value, got {text!r}") from None


def _linspace(lo: float, hi: float, n: int) -> tuple:
    return tuple(round(v, 10) for v in torch.linspace(lo, hi, n, dtype=torch.float64).tolist())


# frame times: early, middle and late frames of the coarsening window (roughly geometric)
SQUARE = Recipe(
    name="square", kind="square", L=30, J=6.0, filling=0.485, kT=0.05, mus=_linspace(-6.4, -2.0, 12),
    bath_kT=(0.0, 0.005, 0.01, 0.02, 0.05), frame_times=(1.0, 2.5, 5.0, 10.0, 20.0, 40.0), cutoff=5.1,
    notes={"mus": "the grid of the shipped square model's grand labels (label-grand --mus=-6.4:-2.0:12)",
           "cutoff": "sqrt(26) of Zhang & Chern; chapter 03: swap sensitivity 0.015 +- 0.007 (24x24) and "
                     "0.021 +- 0.013 (36x36) beyond R = 4.6 at T_e = 0.05, so R = 4.6 is its cutoff"})
TRIANGULAR = Recipe(
    name="triangular", kind="triangular", L=36, J=2.0, mu=-2.4194, kT=0.1,
    mus=tuple(round(-2.4194 + 0.2 * k, 4) for k in range(-2, 3)),
    bath_kT=(0.0, 0.002, 0.005, 0.01, 0.02), frame_times=(2.0, 5.0, 10.0, 20.0, 50.0, 100.0), cutoff=8.0,
    notes={"mu": "middle of the tetrahedral gap at f = 1/4 (edges -3.0000, -1.8388)",
           "cutoff": "chapter 03: swap sensitivity 0.052 +- 0.013 beyond R = 8 and 0.020 +- 0.003 beyond "
                     "R = 10 at T_e = 0.1 (36x36); 8 keeps the committees affordable, 10 is the <= 0.03 cutoff"})
STUDIES = {r.name: r for r in (SQUARE, TRIANGULAR)}


def study(name: str) -> Recipe:
    """The recipe of a study by name ("square", "triangular")."""
    if name not in STUDIES:
        raise ValueError(f"study must be one of {sorted(STUDIES)}, got {name!r}")
    return STUDIES[name]
