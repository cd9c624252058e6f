"""The differentiable descriptor: spins → symmetry-invariant features of every site's neighbourhood.

For each site i (all sites at once, no loop):

1. gather the spins of the neighbourhood 𝒞_i through an ``[N, K]`` index table;
2. form the bond variables ``S_j · S_k`` and chiralities ``S_j · (S_k × S_l)`` (``Neighborhood``);
3. project onto the symmetry-adapted basis, ``f_r^m = u_r^m · v`` (``invariants``);
4. return the invariants: the A1 bond coefficients ``f_r`` and the Gram entries ``f_r · f_s`` of
   copies of the same irrep (power spectrum r = s, relative phases r < s), time-reversal even.

Invariant under global spin rotations (only dot and triple products of spins enter), under the
site point group (D4 / C6v, rotations and mirrors: features at site g(i) of the transformed
configuration equal those at i of the original), equivariant under translations, and even under
time reversal S → −S. Features are not normalised (the network does that). The geometry depends on
the lattice kind and cutoff only, so a descriptor rebuilt by ``from_spec`` on a lattice of another
size gives the same features for the same neighbourhood. Reference: Zhang, Zhang, Chern,
arXiv:2201.00798; Behler, Parrinello, PRL 98, 146401 (2007).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..lattice import Lattice
from .groups import PointGroup
from .invariants import invariant_pairs, symmetry_adapted_basis
from .neighborhood import Neighborhood

__all__ = ["Descriptor", "SPEC_VERSION"]

SPEC_VERSION = 1


class Descriptor(nn.Module):
    """Symmetry-invariant features of the spin neighbourhood of every site.

    Parameters
    ----------
    lattice : Lattice (square or triangular); L must exceed 2·cutoff.
    cutoff : neighbourhood radius r_c in lattice constants, 1 ≤ r_c ≤ 10 (default
        ``DEFAULT_CUTOFF``: 2.3 on the square lattice, shells up to √5, 21 sites, 332 features;
        2.0 on the triangular lattice, shells up to 2, 19 sites, 159 features).
    dtype : floating dtype of the buffers (float64 default; float32 allowed).
    time_reversal : keep only invariants even under S → −S (default True, as the s-d energy is).

    ``forward(spins)``: ``[N, 3]`` or ``[B, N, 3]`` → ``[N, F]`` or ``[B, N, F]``, F = ``n_features``.
    """

    def __init__(self, lattice: Lattice, cutoff: float | None = None, dtype: torch.dtype = torch.float64,
                 time_reversal: bool = True):
        super().__init__()
        if not isinstance(lattice, Lattice):
            raise ValueError(f"lattice must be an sdlib Lattice, got {type(lattice).__name__}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.kind, self.n_sites, self.time_reversal = lattice.kind, lattice.n_sites, bool(time_reversal)
        self.neighborhood = nb = Neighborhood(lattice, cutoff)
        self.cutoff = nb.cutoff
        self.group = PointGroup(lattice.point_group)
        self.copies = symmetry_adapted_basis(nb, self.group)
        linear, pairs = invariant_pairs(self.copies, self.time_reversal)
        self.feature_names = [f"{self.copies[r].irrep}[{r}]" for r in linear] + [
            f"{self.copies[r].irrep}[{r}]·[{s}]" for r, s in pairs]
        self.n_features = len(self.feature_names)
        basis = np.zeros((len(self.copies), 2, nb.n_variables))  # 1-d irreps padded with a zero partner
        for r, c in enumerate(self.copies):
            basis[r, : c.dim] = c.vectors
        pr = np.array([p[0] for p in pairs], dtype=np.int64)
        ps = np.array([p[1] for p in pairs], dtype=np.int64)
        index = torch.from_numpy(nb.site_index(lattice))  # [N, K] lattice sites of each neighbourhood
        # site tables [N, n_bonds] / [N, n_tri] of each bond end and triangle corner, flattened for
        # index_select (whose backward is a fast index_add)
        for name, cols in [("bond_j", nb.bonds[:, 0]), ("bond_k", nb.bonds[:, 1]), ("tri_j", nb.triangles[:, 0]),
                           ("tri_k", nb.triangles[:, 1]), ("tri_l", nb.triangles[:, 2])]:
            self.register_buffer(name, index[:, torch.from_numpy(cols)].reshape(-1), persistent=False)
        self.n_bonds, self.n_tri = len(nb.bonds), len(nb.triangles)
        self.register_buffer("basis", torch.from_numpy(basis).to(dtype), persistent=False)
        self.register_buffer("linear", torch.tensor(linear, dtype=torch.long), persistent=False)
        self.register_buffer("pair_r", torch.from_numpy(pr), persistent=False)
        self.register_buffer("pair_s", torch.from_numpy(ps), persistent=False)

    # ------------------------------------------------------------------ pieces
    def variables(self, spins: torch.Tensor) -> torch.Tensor:
        """Bond variables then chiralities of every neighbourhood: ``[..., N, n_var]``."""
        def take(idx, n):  # spins of the sites idx, shaped [..., N, n, 3]
            return spins.index_select(-2, idx).unflatten(-2, (self.n_sites, n))

        b = (take(self.bond_j, self.n_bonds) * take(self.bond_k, self.n_bonds)).sum(-1)
        sk, sl = take(self.tri_k, self.n_tri), take(self.tri_l, self.n_tri)
        chi = (take(self.tri_j, self.n_tri) * torch.linalg.cross(sk, sl, dim=-1)).sum(-1)
        return torch.cat([b, chi], dim=-1)

    def coefficients(self, spins: torch.Tensor) -> torch.Tensor:
        """Irrep coefficients ``f[..., N, copy, partner]`` (second partner 0 for 1-d irreps)."""
        v = self.variables(spins)
        return torch.einsum("...a,rma->...rm", v, self.basis)

    def forward(self, spins: torch.Tensor) -> torch.Tensor:
        spins = self._check(spins)
        f = self.coefficients(spins)
        lin = f[..., 0].index_select(-1, self.linear)
        quad = (f.index_select(-2, self.pair_r) * f.index_select(-2, self.pair_s)).sum(-1)
        return torch.cat([lin, quad], dim=-1)

    def _check(self, spins) -> torch.Tensor:
        if not isinstance(spins, torch.Tensor):
            raise ValueError(f"spins must be a torch tensor, got {type(spins).__name__}")
        if spins.dim() not in (2, 3) or spins.shape[-2:] != (self.n_sites, 3):
            raise ValueError(f"spins must have shape [{self.n_sites}, 3] or [B, {self.n_sites}, 3], "
                             f"got {list(spins.shape)}")
        if spins.dtype != self.basis.dtype:
            raise ValueError(f"spins dtype {spins.dtype} differs from the descriptor's {self.basis.dtype}; "
                             f"use spins.to({self.basis.dtype}) or Descriptor(..., dtype={spins.dtype})")
        return spins

    # ------------------------------------------------------------------ persistence
    def spec(self) -> dict:
        """JSON-serialisable description; ``Descriptor.from_spec(spec, lattice)`` rebuilds it on any L."""
        return {
            "name": "sdlib.descriptors.Descriptor",
            "version": SPEC_VERSION,
            "lattice_kind": self.kind,
            "cutoff": self.cutoff,
            "time_reversal": self.time_reversal,
            "n_features": self.n_features,
            "note": "geometry depends on lattice kind and cutoff only; valid on any L > 2*cutoff",
        }

    @classmethod
    def from_spec(cls, spec: dict, lattice: Lattice, dtype: torch.dtype = torch.float64) -> "Descriptor":
        """Rebuild a descriptor from ``spec()`` on ``lattice`` (same kind, any admissible L)."""
        if spec.get("version") != SPEC_VERSION:
            raise ValueError(f"spec version must be {SPEC_VERSION}, got {spec.get('version')!r}")
        if spec.get("lattice_kind") != lattice.kind:
            raise ValueError(f"spec is for a {spec.get('lattice_kind')!r} lattice, got {lattice.kind!r}")
        d = cls(lattice, cutoff=spec["cutoff"], dtype=dtype, time_reversal=spec.get("time_reversal", True))
        if "n_features" in spec and spec["n_features"] != d.n_features:
            raise ValueError(f"spec has n_features={spec['n_features']} but the rebuilt descriptor has "
                             f"{d.n_features}; it was made by an incompatible sdlib version")
        return d

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, cutoff={self.cutoff}, n_features={self.n_features}"
