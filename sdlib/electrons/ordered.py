"""Ordered spin states in momentum space: Bloch levels, energies per site, (J, μ) phase diagrams.

Each state is a spin pattern periodic on an m × m magnetic cell (in the integer coordinates of
:mod:`sdlib.lattice`); the Bloch Hamiltonian on an n_k × n_k mesh of the magnetic Brillouin zone
is built generically from the lattice's nearest-neighbour vectors, with hopping phases
e^{2πi (j1 R1 + j2 R2)/n_k} for a hop that leaves the cell by (R1, R2) cells. Its levels are exactly
those of the real-space model on the (m·n_k) × (m·n_k) torus — the identity the tests use.
The public functions take ``size``, the linear size of that equivalent torus; n_k = ⌈size/m⌉, so
states with different cells are compared on (nearly) the same number of sites.

Conventions are those of :mod:`sdlib.model` (H = -t Σ c†c - J Σ S·σ, Pauli matrices, |S| = 1).
Energies are per site: Ω/N at fixed μ; E/N at fixed filling f (the lowest 2N·f levels, T = 0) or
the free energy per site at kT > 0.

States (name: pattern):
  FM: S = ẑ.  Neel (square): (-1)^{x+y} ẑ.  stripe: (-1)^x ẑ (a (π, 0) collinear stripe).
  120 (triangular): in-plane, angle 2π/3 · ((x - y) mod 3).
  tetrahedral (triangular): the four corners of a regular tetrahedron on the 2 × 2 cell,
  sublattice (x mod 2) + 2 (y mod 2); every triangle has χ = ±4/(3√3).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..lattice import Lattice
from ..lattice import square as _square
from ..lattice import triangular as _triangular
from .ed import occupations

__all__ = ["STATES", "spins", "levels", "energy", "compare", "ground_state", "phase_diagram", "dos"]

STATES: dict[str, tuple[str, ...]] = {
    "square": ("FM", "Neel", "stripe"),
    "triangular": ("FM", "120", "stripe", "tetrahedral"),
}
_CELL = {"FM": 1, "Neel": 2, "stripe": 2, "120": 3, "tetrahedral": 2}
_TETRA = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64) / math.sqrt(3)


def _check(name: str, kind: str) -> None:
    if kind not in STATES:
        raise ValueError(f"kind must be 'square' or 'triangular', got {kind!r}")
    if name not in STATES[kind]:
        raise ValueError(f"name must be one of {STATES[kind]} on the {kind} lattice, got {name!r}")


def _pattern(name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Spins ``[n, 3]`` of the state at integer coordinates (x, y)."""
    z = torch.zeros(len(x), 3, dtype=torch.float64)
    if name == "FM":
        z[:, 2] = 1.0
    elif name == "Neel":
        z[:, 2] = 1.0 - 2.0 * ((x + y) % 2)
    elif name == "stripe":
        z[:, 2] = 1.0 - 2.0 * (x % 2)
    elif name == "120":
        phi = 2 * math.pi / 3 * ((x - y) % 3).double()
        z[:, 0], z[:, 1] = torch.cos(phi), torch.sin(phi)
    elif name == "tetrahedral":
        z = _TETRA[(x % 2) + 2 * (y % 2)].clone()
    return z


def spins(name: str, lattice: Lattice) -> torch.Tensor:
    """The state on a finite lattice, ``[N, 3]``; ``lattice.L`` must be a multiple of the cell."""
    _check(name, lattice.kind)
    m = _CELL[name]
    if lattice.L % m:
        raise ValueError(f"the {name} state needs L divisible by {m}, got L={lattice.L}")
    return _pattern(name, lattice.coords[:, 0], lattice.coords[:, 1])


def bloch_hamiltonians(name: str, kind: str, J: float, t: float = 1.0, n_k: int = 32) -> torch.Tensor:
    """Bloch matrices ``[n_k², 2 m², 2 m²]`` (complex128) on the magnetic-zone mesh."""
    _check(name, kind)
    if not (isinstance(n_k, (int, np.integer)) and n_k >= 1):
        raise ValueError(f"n_k must be a positive integer, got {n_k!r}")
    m = _CELL[name]
    cell = (_square if kind == "square" else _triangular)(max(m, 3))
    c = torch.tensor([(x, y) for y in range(m) for x in range(m)])  # sublattice a = x + m y
    n_sub = len(c)
    j = torch.arange(n_k, dtype=torch.float64)
    j1, j2 = (g.reshape(-1) for g in torch.meshgrid(j, j, indexing="ij"))
    H = torch.zeros(n_k * n_k, n_sub, n_sub, dtype=torch.complex128)
    for dx, dy in cell.nn_vectors:
        tx, ty = c[:, 0] + dx, c[:, 1] + dy
        R1, R2 = torch.div(tx, m, rounding_mode="floor"), torch.div(ty, m, rounding_mode="floor")
        b = (tx % m) + m * (ty % m)
        phase = torch.exp(2j * math.pi * (j1[:, None] * R1 + j2[:, None] * R2) / n_k)  # [k, a]
        H[:, b, torch.arange(n_sub)] += -t * phase  # c†_b c_a: hop from a to its neighbour b
    H = torch.kron(H, torch.eye(2, dtype=torch.complex128))
    S = _pattern(name, c[:, 0], c[:, 1]).to(torch.complex128)
    local = torch.zeros(2 * n_sub, 2 * n_sub, dtype=torch.complex128)
    up = torch.arange(0, 2 * n_sub, 2)
    local[up, up] = -J * S[:, 2]
    local[up + 1, up + 1] = J * S[:, 2]
    local[up, up + 1] = -J * (S[:, 0] - 1j * S[:, 1])
    local[up + 1, up] = -J * (S[:, 0] + 1j * S[:, 1])
    return H + local


def levels(name: str, kind: str, J: float, t: float = 1.0, size: int = 96) -> torch.Tensor:
    """All single-particle levels (sorted, float64) on the equivalent ``size`` × ``size`` torus, 2 per site."""
    _check(name, kind)
    if not (isinstance(size, (int, np.integer)) and size >= 1):
        raise ValueError(f"size must be a positive integer, got {size!r}")
    n_k = -(-size // _CELL[name])
    return torch.linalg.eigvalsh(bloch_hamiltonians(name, kind, J, t, n_k)).reshape(-1).sort().values


def _energy_from_levels(eps: torch.Tensor, mu=None, filling=None, kT: float = 0.0) -> float:
    if (mu is None) == (filling is None):
        raise ValueError("give exactly one of mu (fixed chemical potential) or filling (fixed electron number)")
    if kT < 0:
        raise ValueError(f"kT must be >= 0, got {kT}")
    n_sites = eps.numel() / 2
    if filling is not None:
        if not 0 < filling < 1:
            raise ValueError(f"filling must be > 0 and < 1, got {filling}")
        return float(occupations(eps, n_electrons=int(round(eps.numel() * filling)), kT=kT)[2] / n_sites)
    return float(occupations(eps, mu=mu, kT=kT)[2] / n_sites)


def energy(name, kind, J, mu=None, filling=None, t=1.0, kT=0.0, size=96) -> float:
    """Energy per site of one state (module docstring for the ensembles)."""
    return _energy_from_levels(levels(name, kind, J, t, size), mu, filling, kT)


def compare(kind, J, mu=None, filling=None, t=1.0, kT=0.0, size=96) -> dict[str, float]:
    """Energy per site of every state of the lattice."""
    if kind not in STATES:
        raise ValueError(f"kind must be 'square' or 'triangular', got {kind!r}")
    return {s: energy(s, kind, J, mu, filling, t, kT, size) for s in STATES[kind]}


def ground_state(kind, J, mu=None, filling=None, t=1.0, kT=0.0, size=96) -> str:
    """Name of the lowest-energy state among ``STATES[kind]``."""
    e = compare(kind, J, mu, filling, t, kT, size)
    return min(e, key=e.get)


def phase_diagram(kind, Js, mus, t=1.0, size=48):
    """Ground state at fixed μ (kT = 0) on a (J, μ) grid.

    Returns ``(names, winner [nJ, nμ] int array, omega [n_states, nJ, nμ])`` with Ω/N per site.
    Levels are computed once per (state, J) and reused for every μ (cumulative sums).
    """
    if kind not in STATES:
        raise ValueError(f"kind must be 'square' or 'triangular', got {kind!r}")
    names = STATES[kind]
    mus = torch.as_tensor(np.asarray(mus, float))
    omega = torch.zeros(len(names), len(Js), len(mus), dtype=torch.float64)
    for a, name in enumerate(names):
        for b, J in enumerate(Js):
            eps = levels(name, kind, float(J), t, size)
            csum = torch.cat([torch.zeros(1, dtype=torch.float64), eps.cumsum(0)])
            n_below = torch.searchsorted(eps, mus)  # levels with ε < μ
            omega[a, b] = (csum[n_below] - mus * n_below) / (eps.numel() / 2)
    return names, omega.argmin(0).numpy(), omega


def dos(name, kind, J, energies, broadening=0.05, t=1.0, size=96) -> torch.Tensor:
    """Gaussian-broadened DOS per site and spin orbital (integrates to 1)."""
    if not broadening > 0:
        raise ValueError(f"broadening must be > 0, got {broadening}")
    eps = levels(name, kind, J, t, size)
    w = torch.as_tensor(energies, dtype=torch.float64)
    x = (w[:, None] - eps[None, :]) / broadening
    return torch.exp(-0.5 * x**2).sum(-1) / (eps.numel() * broadening * math.sqrt(2 * math.pi))
