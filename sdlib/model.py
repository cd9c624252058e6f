"""The one-band s-d (Kondo-lattice) model with classical local moments.

    H = -t Σ_<ij>,σ (c†_iσ c_jσ + h.c.) - J Σ_i S_i · (c†_i σ c_i)

σ are Pauli matrices (no factor 1/2), |S_i| = 1, t = 1 sets the energy unit. The single-particle
matrix is 2N × 2N, complex Hermitian, with the spin index fastest: row ``2i + s`` (s = 0 ↑, 1 ↓).
Its diagonal 2 × 2 block at site i is ``-J (S·σ)``.

Exactly one of ``mu`` (grand canonical, fixed chemical potential) or ``filling``
(canonical, ``N_e = round(2N · filling)`` electrons, f = N_e / 2N per spin orbital) is given.
``kT`` is the electron temperature (k_B = 1); 0 means ground state.
"""
from __future__ import annotations

import math
from functools import cached_property

import torch

from .lattice import Lattice

__all__ = ["SDModel", "check_spins", "random_spins"]


def _check_number(name: str, value, *, lo=None, lo_open=False, hi=None, hi_open=False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    bad = not math.isfinite(v)
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v >= hi if hi_open else v > hi
    if bad:
        lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
        hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi}"
        rng = " and ".join(x for x in (lo_s, hi_s) if x) or "finite"
        raise ValueError(f"{name} must be {rng}, got {value!r}")
    return v


def check_spins(spins, n_sites: int, *, check_norm: bool = True, atol: float = 1e-6) -> torch.Tensor:
    """Validate a spin configuration ``[N, 3]`` or ``[B, N, 3]`` and return it as a tensor.

    Raises ``ValueError`` naming ``spins`` for a wrong shape, non-finite entries or (with
    ``check_norm``) lengths that differ from 1 by more than ``atol``.
    """
    if not isinstance(spins, torch.Tensor):
        spins = torch.as_tensor(spins, dtype=torch.float64)
    if spins.dim() not in (2, 3) or spins.shape[-2:] != (n_sites, 3):
        raise ValueError(f"spins must have shape [{n_sites}, 3] or [B, {n_sites}, 3], got {list(spins.shape)}")
    if not spins.is_floating_point():
        raise ValueError(f"spins must be a floating-point tensor, got dtype {spins.dtype}")
    if not torch.isfinite(spins).all():
        raise ValueError("spins contain NaN or infinite entries")
    if check_norm:
        dev = (spins.norm(dim=-1) - 1).abs().max().item()
        if dev > atol:
            raise ValueError(
                f"spins must be unit vectors (|S_i| = 1 within {atol:g}); the largest deviation is {dev:.3g}. "
                "Normalise them, e.g. spins / spins.norm(dim=-1, keepdim=True)"
            )
    return spins


def random_spins(n_sites: int, batch=(), *, seed: int | None = None, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Unit spins drawn uniformly on the sphere, ``[*batch, n_sites, 3]`` (normalised Gaussians).

    ``seed`` makes a fresh CPU generator; ``generator`` continues a given one (give at most one).
    The numbers are drawn on the CPU in float64 and then moved to ``device`` / ``dtype``, so the
    same seed gives the same spins on every device.
    """
    if not (isinstance(n_sites, int) and n_sites >= 1):
        raise ValueError(f"n_sites must be an integer >= 1, got {n_sites!r}")
    batch = (batch,) if isinstance(batch, int) else tuple(batch)
    if not all(isinstance(b, int) and b >= 1 for b in batch):
        raise ValueError(f"batch must be an integer >= 1 or a tuple of them, got {batch!r}")
    if seed is not None and generator is not None:
        raise ValueError("give seed or generator, not both")
    g = generator if generator is not None else (torch.Generator().manual_seed(seed) if seed is not None else None)
    s = torch.randn(*batch, n_sites, 3, generator=g, dtype=torch.float64)
    return (s / s.norm(dim=-1, keepdim=True)).to(device=device, dtype=dtype)


class SDModel:
    """Parameters of the s-d model on a lattice, and its single-particle Hamiltonian.

    Parameters
    ----------
    lattice : Lattice
    t : hopping (> 0; the sign matters on the triangular lattice, PHYSICS.md).
    J : Hund/Kondo coupling (any finite real; Pauli convention).
    mu : chemical potential (grand canonical), or
    filling : electrons per spin orbital, 0 < f < 1 (canonical).
    kT : electron temperature >= 0.
    """

    def __init__(self, lattice: Lattice, t: float = 1.0, J: float = 1.0, mu=None, filling=None, kT: float = 0.0):
        if not isinstance(lattice, Lattice):
            raise ValueError(f"lattice must be an sdlib Lattice (lattice.square(L) or lattice.triangular(L)), got {type(lattice).__name__}")
        self.lattice = lattice
        self.t = _check_number("t", t, lo=0.0, lo_open=True)
        self.J = _check_number("J", J)
        self.kT = _check_number("kT", kT, lo=0.0)
        if (mu is None) == (filling is None):
            raise ValueError("give exactly one of mu (fixed chemical potential) or filling (fixed electron number)")
        self.mu = None if mu is None else _check_number("mu", mu)
        self.filling = None if filling is None else _check_number("filling", filling, lo=0.0, lo_open=True, hi=1.0, hi_open=True)
        if self.filling is not None:
            n_e = self.n_electrons
            if not 0 < n_e < 2 * self.n_sites:
                raise ValueError(
                    f"filling={filling} gives {n_e} electrons on {self.n_sites} sites; need 0 < round(2N·filling) < 2N"
                )

    # ------------------------------------------------------------------ descriptors of the ensemble
    @property
    def n_sites(self) -> int:
        return self.lattice.n_sites

    @property
    def dim(self) -> int:
        """Dimension 2N of the single-particle Hilbert space."""
        return 2 * self.n_sites

    @property
    def canonical(self) -> bool:
        return self.filling is not None

    @property
    def n_electrons(self) -> int | None:
        """``round(2N · filling)`` at fixed filling, ``None`` at fixed μ."""
        return None if self.filling is None else int(round(2 * self.n_sites * self.filling))

    def physics(self) -> dict:
        """The parameters as a plain dict (for provenance and saved models)."""
        d = {"lattice": self.lattice.kind, "L": self.lattice.L, "t": self.t, "J": self.J, "kT": self.kT}
        d.update({"mu": self.mu} if self.mu is not None else {"filling": self.filling})
        return d

    def __repr__(self) -> str:
        ens = f"mu={self.mu}" if self.mu is not None else f"filling={self.filling} (N_e={self.n_electrons})"
        return f"SDModel({self.lattice!r}, t={self.t}, J={self.J}, {ens}, kT={self.kT})"

    # ------------------------------------------------------------------ matrices
    @cached_property
    def hopping(self) -> torch.Tensor:
        """Dense ``[N, N]`` real hopping matrix, ``-t`` on every nearest-neighbour pair."""
        N = self.n_sites
        T = torch.zeros(N, N, dtype=torch.float64)
        b = self.lattice.bonds
        T.index_put_((b[:, 0], b[:, 1]), torch.tensor(-self.t, dtype=torch.float64), accumulate=True)
        return T + T.T

    def _spinful_hopping(self, device) -> torch.Tensor:
        key = str(device)
        cache = self.__dict__.setdefault("_hop_cache", {})
        if key not in cache:
            eye = torch.eye(2, dtype=torch.float64)
            cache.clear()  # keep one copy (the matrix is 2N × 2N)
            cache[key] = torch.kron(self.hopping, eye).to(device=device, dtype=torch.complex128)
        return cache[key]

    def hamiltonian(self, spins: torch.Tensor) -> torch.Tensor:
        """Dense single-particle Hamiltonian ``[..., 2N, 2N]`` (complex128 on the spins' device)."""
        spins = check_spins(spins, self.n_sites, check_norm=False)
        batch = spins.shape[:-2]
        dev = spins.device
        H = self._spinful_hopping(dev).expand(*batch, self.dim, self.dim).clone()
        sx, sy, sz = (spins[..., a].to(torch.float64) for a in range(3))
        up = torch.arange(0, self.dim, 2, device=dev)
        dn = up + 1
        H[..., up, up] += -self.J * sz
        H[..., dn, dn] += self.J * sz
        H[..., up, dn] += -self.J * torch.complex(sx, -sy)
        H[..., dn, up] += -self.J * torch.complex(sx, sy)
        return H

    def sparse_hopping(self, device=None) -> torch.Tensor:
        """Sparse COO ``[2N, 2N]`` hopping part (spin-diagonal), for matrix–vector products."""
        b = self.lattice.bonds
        i = torch.cat([b[:, 0], b[:, 1]])
        j = torch.cat([b[:, 1], b[:, 0]])
        rows = torch.cat([2 * i, 2 * i + 1])
        cols = torch.cat([2 * j, 2 * j + 1])
        vals = torch.full((rows.numel(),), -self.t, dtype=torch.complex128)
        idx = torch.stack([rows, cols])
        shape = (self.dim, self.dim)
        return torch.sparse_coo_tensor(idx, vals, shape, device=device, check_invariants=True).coalesce()

    def spectral_bounds(self) -> tuple[float, float]:
        """Gershgorin bounds on the spectrum: |ε| <= z·t + |J| for unit spins."""
        r = self.lattice.coordination * self.t + abs(self.J)
        return -r, r
