"""The differentiable descriptor: spins → symmetry-invariant features of every site's neighbourhood.

For each site i (all sites at once, no loop):

1. form the bond variables ``S_j · S_k`` and chiralities ``S_j · (S_k × S_l)`` of the neighbourhood
   𝒞_i (``Neighborhood``). Each is one entry of a per-site table over all sites x, ``S_x · S_{x+d}``
   for the few distinct displacements d, or ``S_x · (S_{x+d1} × S_{x+d2})`` for the few triangle
   shapes, gathered at x = i + (offset of its first site): every product of spins is computed once
   and shared by all the neighbourhoods that contain it;
2. project onto the symmetry-adapted basis, ``f_r^m = u_r^m · v`` (``invariants``);
3. return the invariants: the A1 bond coefficients ``f_r`` and the Gram entries ``f_r · f_s`` of
   copies of the same irrep (power spectrum r = s, relative phases r < s), time-reversal even.

Internally the site index is the last (fastest) axis, so gathers copy whole rows; the Gram
entries are formed in blocks of sites that fit the cache (``_GramEntries``). The features equal
those of the direct construction (gather the neighbourhood spins, form each variable) to round-off,
≲ 1e-14 in float64 (``tests/test_descriptor_fast.py``).

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
    phase_cutoff : None (default: every relative phase ``f_r · f_s`` of copies of an irrep), or a
        radius 1 ≤ r_p < r_c: a relative phase is kept only if one of its two copies comes from
        variables within r_p of the centre (``invariant_pairs``' ``inner``); the power spectrum of
        every copy is kept. A lean descriptor for large cutoffs: at r_c = 4.6 on the square lattice
        4851 features, 997 with r_p = 1.5. Its features are a subset of the full descriptor's.

    ``forward(spins)``: ``[N, 3]`` or ``[B, N, 3]`` → ``[N, F]`` or ``[B, N, F]``, F = ``n_features``.
    The index tables and the basis are buffers: ``descriptor.to(device)`` moves them, and the spins
    must be on the same device (and have the same dtype).
    """

    def __init__(self, lattice: Lattice, cutoff: float | None = None, dtype: torch.dtype = torch.float64,
                 time_reversal: bool = True, phase_cutoff: float | None = None):
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
        self.phase_cutoff = _check_phase_cutoff(phase_cutoff, self.cutoff)
        inner = None
        if self.phase_cutoff is not None:
            radii = nb.orbit_radii()
            inner = [bool(radii[c.orbit] <= self.phase_cutoff + 1e-9) for c in self.copies]
        linear, pairs = invariant_pairs(self.copies, self.time_reversal, inner)
        self.feature_names = [f"{self.copies[r].irrep}[{r}]" for r in linear] + [
            f"{self.copies[r].irrep}[{r}]·[{s}]" for r, s in pairs]
        self.n_features = len(self.feature_names)
        basis = np.zeros((len(self.copies), 2, nb.n_variables))  # 1-d irreps padded with a zero partner
        for r, c in enumerate(self.copies):
            basis[r, : c.dim] = c.vectors
        pr = np.array([p[0] for p in pairs], dtype=np.int64)
        ps = np.array([p[1] for p in pairs], dtype=np.int64)
        self.n_bonds, self.n_tri = len(nb.bonds), len(nb.triangles)
        self._build_tables(lattice, nb)
        self.register_buffer("basis", torch.from_numpy(basis).to(dtype), persistent=False)
        # partner-major basis [2, copy, n_var]: coefficients of all sites as two matrix products
        self.register_buffer("basis_t", torch.from_numpy(basis.transpose(1, 0, 2).copy()).to(dtype),
                             persistent=False)
        self.register_buffer("linear", torch.tensor(linear, dtype=torch.long), persistent=False)
        self.register_buffer("pair_r", torch.from_numpy(pr), persistent=False)
        self.register_buffer("pair_s", torch.from_numpy(ps), persistent=False)

    def _build_tables(self, lattice: Lattice, nb: Neighborhood) -> None:
        """Index tables of the shared products of spins (module docstring, step 1).

        A bond variable of the neighbourhood of site i, ``S_{i+a} · S_{i+a+d}``, is the entry
        ``[d, i + a]`` of the table ``S_x · S_{x+d}`` (d up to sign). A chirality is the entry of the
        table ``S_x · (S_{x+d1} × S_{x+d2})`` of its shape (d1, d2), read from the corner that makes
        (d1, d2) smallest among its cyclic orders (the triple product is cyclic, so the orientation
        is kept). ``var_index`` points every (variable, site) at its table entry.
        """
        nb.site_index(lattice)  # raises with a clear message when L is too small for the cutoff
        off = [tuple(int(c) for c in o) for o in nb.offsets]
        sub = lambda p, q: (p[0] - q[0], p[1] - q[1])
        bond_types, tri_types, var_type, var_base = {}, {}, [], []
        for a, b in nb.bonds:
            d = sub(off[b], off[a])
            base = off[a]
            if d < (0, 0):
                d, base = (-d[0], -d[1]), off[b]
            var_type.append(("b", bond_types.setdefault(d, len(bond_types))))
            var_base.append(base)
        for tri in nb.triangles:
            d1, d2, base = min((sub(off[tri[(k + 1) % 3]], off[tri[k]]), sub(off[tri[(k + 2) % 3]], off[tri[k]]),
                                off[tri[k]]) for k in range(3))
            var_type.append(("t", tri_types.setdefault((d1, d2), len(tri_types))))
            var_base.append(base)
        shifts = {}
        for d in [*bond_types, *(x for key in tri_types for x in key), *var_base]:
            shifts.setdefault(d, len(shifts))
        N = lattice.n_sites
        shift_idx = torch.stack([lattice.shifted(*d) for d in shifts])  # [n_shift, N]
        self.register_buffer("shift_index", shift_idx.reshape(-1), persistent=False)
        self.register_buffer("bond_shift", torch.tensor([shifts[d] for d in bond_types], dtype=torch.long),
                             persistent=False)
        self.register_buffer("tri_shift", torch.tensor([[shifts[d1], shifts[d2]] for d1, d2 in tri_types],
                                                       dtype=torch.long).reshape(-1, 2), persistent=False)
        n_bt = len(bond_types)
        rows = torch.tensor([t if kind == "b" else n_bt + t for kind, t in var_type], dtype=torch.long)
        bases = shift_idx[torch.tensor([shifts[b] for b in var_base], dtype=torch.long)]  # [n_var, N]
        # flat index into the tables [n_types, N] of variable k at site i: row_k · N + (i + base_k)
        self.register_buffer("var_index", (rows[:, None] * N + bases).reshape(-1), persistent=False)
        self.n_types = n_bt + len(tri_types)

    # ------------------------------------------------------------------ pieces
    # Internally [B, ..., N] (site index last); the public shapes put the sites first.
    def _variables_t(self, spins: torch.Tensor) -> torch.Tensor:
        """Bond variables then chiralities, ``[B, n_var, N]`` for spins ``[B, N, 3]``."""
        N = self.n_sites
        s = spins.transpose(-1, -2)  # [B, 3, N]
        sh = s.index_select(-1, self.shift_index).unflatten(-1, (-1, N))  # [B, 3, n_shift, N]
        s0 = s.unsqueeze(-2)
        bonds = (s0 * sh.index_select(-2, self.bond_shift)).sum(-3)
        sk, sl = sh.index_select(-2, self.tri_shift[:, 0]), sh.index_select(-2, self.tri_shift[:, 1])
        chi = (s0 * torch.linalg.cross(sk, sl, dim=-3)).sum(-3)
        tables = torch.cat([bonds, chi], dim=-2).flatten(-2)  # [B, n_types · N]
        return tables.index_select(-1, self.var_index).unflatten(-1, (-1, N))

    def _coefficients_t(self, spins: torch.Tensor) -> torch.Tensor:
        """Irrep coefficients ``[B, partner, copy, N]``."""
        return self.basis_t.unsqueeze(0) @ self._variables_t(spins).unsqueeze(1)

    @staticmethod
    def _batched(spins: torch.Tensor):
        return (spins, False) if spins.dim() == 3 else (spins.unsqueeze(0), True)

    def variables(self, spins: torch.Tensor) -> torch.Tensor:
        """Bond variables then chiralities of every neighbourhood: ``[..., N, n_var]``."""
        s, single = self._batched(spins)
        v = self._variables_t(s).transpose(-1, -2)
        return v[0] if single else v

    def coefficients(self, spins: torch.Tensor) -> torch.Tensor:
        """Irrep coefficients ``f[..., N, copy, partner]`` (second partner 0 for 1-d irreps)."""
        s, single = self._batched(spins)
        f = self._coefficients_t(s).permute(0, 3, 2, 1)
        return f[0] if single else f

    def forward(self, spins: torch.Tensor) -> torch.Tensor:
        s, single = self._batched(self._check(spins))
        f = self._coefficients_t(s)  # [B, partner, copy, N]
        lin = f[:, 0].index_select(-2, self.linear)
        quad = _GramEntries.apply(f, self.pair_r, self.pair_s)
        out = torch.cat([lin, quad], dim=-2).transpose(-1, -2).contiguous()  # [B, N, F], row-major for the network
        return out[0] if single else out

    def _check(self, spins) -> torch.Tensor:
        if not isinstance(spins, torch.Tensor):
            raise ValueError(f"spins must be a torch tensor, got {type(spins).__name__}")
        if spins.dim() not in (2, 3) or spins.shape[-2:] != (self.n_sites, 3):
            raise ValueError(f"spins must have shape [{self.n_sites}, 3] or [B, {self.n_sites}, 3], "
                             f"got {list(spins.shape)}")
        if spins.device != self.basis.device:
            raise ValueError(f"spins are on {spins.device}, the descriptor on {self.basis.device}; "
                             f"move one of them, e.g. descriptor.to(spins.device)")
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
            "phase_cutoff": self.phase_cutoff,
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
        d = cls(lattice, cutoff=spec["cutoff"], dtype=dtype, time_reversal=spec.get("time_reversal", True),
                phase_cutoff=spec.get("phase_cutoff"))
        if "n_features" in spec and spec["n_features"] != d.n_features:
            raise ValueError(f"spec has n_features={spec['n_features']} but the rebuilt descriptor has "
                             f"{d.n_features}; it was made by an incompatible sdlib version")
        return d

    def extra_repr(self) -> str:
        lean = f", phase_cutoff={self.phase_cutoff}" if self.phase_cutoff is not None else ""
        return f"kind={self.kind!r}, cutoff={self.cutoff}{lean}, n_features={self.n_features}"


def _check_phase_cutoff(phase_cutoff, cutoff: float) -> float | None:
    if phase_cutoff is None:
        return None
    try:
        value = float(phase_cutoff)
    except (TypeError, ValueError):
        raise ValueError(f"phase_cutoff must be None or a number in [1, cutoff), got {phase_cutoff!r}") from None
    if not 1.0 <= value < cutoff:
        raise ValueError(f"phase_cutoff must be None or a number in [1, cutoff = {cutoff}), got {phase_cutoff!r}")
    return value


BLOCK_ELEMENTS = 1 << 18  # Gram entries × sites per block of ``_GramEntries`` on the CPU


def _site_blocks(f: torch.Tensor, n_pairs: int) -> list[slice]:
    """Blocks of sites for ``_GramEntries``: cache-sized on the CPU, one block on a GPU."""
    n_sites = f.shape[-1]
    step = n_sites if f.device.type != "cpu" else max(16, BLOCK_ELEMENTS // max(n_pairs, 1))
    return [slice(a, min(a + step, n_sites)) for a in range(0, n_sites, step)]


class _GramEntries(torch.autograd.Function):
    """Gram entries ``G_p = Σ_m f[m, r_p] f[m, s_p]`` of coefficients ``f [B, partner, copy, N]``.

    Returns ``[B, n_pairs, N]``. Computed in blocks of sites so that the gathered copies stay in
    cache; only ``f`` is saved (not the gathered copies), and the backward pass
    ``∂G_p/∂f[m, c] = δ_{c r_p} f[m, s_p] + δ_{c s_p} f[m, r_p]`` is written with differentiable
    operations, so double backward (training on fields) works through it.
    """

    @staticmethod
    def forward(ctx, f, r, s):
        ctx.save_for_backward(f, r, s)
        out = f.new_empty(f.shape[0], len(r), f.shape[-1])
        for b in _site_blocks(f, len(r)):
            fb = f[..., b]
            out[..., b] = (fb.index_select(-2, r) * fb.index_select(-2, s)).sum(1)
        return out

    @staticmethod
    def backward(ctx, grad):
        f, r, s = ctx.saved_tensors
        grad = grad.contiguous()
        to, other = torch.cat([r, s]), torch.cat([s, r])  # each entry feeds both of its copies
        parts = []
        for b in _site_blocks(f, len(r)):
            fb, gb = f[..., b], grad[..., b].repeat(1, 2, 1).unsqueeze(1)
            parts.append(torch.zeros_like(fb).index_add(-2, to, gb * fb.index_select(-2, other)))
        return torch.cat(parts, dim=-1), None, None
