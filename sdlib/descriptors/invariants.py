"""Irreducible decomposition of the neighbourhood variables and the invariants built from it.

Projection operators (e.g. Dresselhaus, Dresselhaus, Jorio, *Group Theory*, ch. 4). For a
representation ``D(g)`` of a group G on the variables v and an irrep Γ of dimension d_Γ with
orthogonal matrices ``D^Γ(g)``:

    P^Γ      = (d_Γ/|G|) Σ_g χ^Γ(g) D(g)           projector on all copies of Γ,
    P^Γ_{mn} = (d_Γ/|G|) Σ_g D^Γ_{mn}(g) D(g),     D(g) P^Γ_{mn} = Σ_l D^Γ_{lm}(g) P^Γ_{ln}.

``P^Γ_{11}`` projects onto the first partner of every copy. We take an orthonormal basis
``u_r^1`` of its range by Gram–Schmidt over the unit vectors of each orbit of variables in a fixed
order (deterministic, so a saved network always sees the same features), then the partners
``u_r^m = P^Γ_{m1} u_r^1``. Every copy r then transforms with the *same* matrices:
``D(g) u_r^m = Σ_l D^Γ_{lm}(g) u_r^l``. The coefficients ``f_r^m = u_r^m · v`` therefore rotate
as ``f_r → D^Γ(g⁻¹) f_r``, and because the ``D^Γ`` are orthogonal the Gram matrix

    G^Γ_rs = f_r · f_s = Σ_m f_r^m f_s^m

is invariant. Its diagonal is the power spectrum ``p^Γ_r = |f_r|²``; the off-diagonal entries are the
phase-sensitive invariants that keep the relative orientation of copies (for one-dimensional
non-trivial irreps, the relative sign). For real orthogonal irreps (all irreps of D4 and C6v are)
the invariant quadratic forms on ``⊕_Γ Γ^{n_Γ}`` are exactly spanned by these G^Γ_rs (Schur's lemma).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .groups import Irrep, PointGroup
from .neighborhood import Neighborhood

__all__ = ["character_projector", "component_projector", "Copy", "symmetry_adapted_basis"]

_GS_TOL = 1e-8


def character_projector(rep: np.ndarray, irrep: Irrep) -> np.ndarray:
    """``P^Γ = (d_Γ/|G|) Σ_g χ^Γ(g) D(g)`` (characters are real for D4 and C6v)."""
    return irrep.dim / len(rep) * np.einsum("g,gab->ab", irrep.characters, rep)


def component_projector(rep: np.ndarray, irrep: Irrep, m: int, n: int) -> np.ndarray:
    """``P^Γ_{mn} = (d_Γ/|G|) Σ_g D^Γ_{mn}(g) D(g)``."""
    return irrep.dim / len(rep) * np.einsum("g,gab->ab", irrep.matrices[:, m, n], rep)


@dataclass
class Copy:
    """One copy of an irrep inside the variables: orthonormal partner vectors ``[dim, n_var]``."""

    irrep: str
    dim: int
    orbit: int
    parity: int  # +1: built from bonds (time-reversal even); -1: from chiralities (odd)
    vectors: np.ndarray


def _gram_schmidt(columns: np.ndarray) -> list[np.ndarray]:
    basis: list[np.ndarray] = []
    for c in columns.T:
        w = c - sum((b @ c) * b for b in basis) if basis else c.copy()
        w = w - sum((b @ w) * b for b in basis) if basis else w  # second pass for stability
        norm = np.linalg.norm(w)
        if norm > _GS_TOL:
            basis.append(w / norm)
    return basis


def symmetry_adapted_basis(nbhd: Neighborhood, group: PointGroup) -> list[Copy]:
    """All irrep copies of the variables, ordered by irrep, then orbit (bond orbits come first)."""
    n = nbhd.n_variables
    copies = []
    for irrep in group.irreps:
        P11 = component_projector(nbhd.rep, irrep, 0, 0)
        partners = [component_projector(nbhd.rep, irrep, m, 0) for m in range(irrep.dim)]
        for k, orb in enumerate(nbhd.orbits):
            unit = np.zeros((n, len(orb)))
            unit[orb, np.arange(len(orb))] = 1.0
            for u1 in _gram_schmidt(P11 @ unit):
                vecs = np.stack([P @ u1 for P in partners])
                copies.append(Copy(irrep.name, irrep.dim, k, int(nbhd.parity[orb[0]]), vecs))
    return copies


def invariant_pairs(copies: list[Copy], time_reversal: bool = True,
                    inner=None) -> tuple[list[int], list[tuple[int, int]]]:
    """Which invariants to form: ``(linear, pairs)``.

    ``linear``: indices of copies of the trivial irrep A1 used as they are (first-order invariants).
    ``pairs``: (r, s), r ≤ s, copies of the same irrep whose Gram entry ``f_r · f_s`` is a feature.

    With ``time_reversal=True`` only time-reversal-even invariants are kept (the s-d energy is even
    under S → −S): A1 copies of the bonds enter linearly; Gram entries pair bond copies with bond
    copies and chirality copies with chirality copies; products of A1 bond coefficients are left to
    the network. With ``False`` the odd ones are added (A1 chirality copies, bond × chirality pairs).

    ``inner`` (optional, one bool per copy): keep a relative phase ``f_r · f_s`` (r ≠ s) only when
    copy r or copy s is inner; power spectra ``|f_r|²`` are kept for every copy. The number of
    features then grows linearly with the outer copies instead of quadratically: every outer
    copy keeps its orientation relative to the inner ones (the "reference coefficients" of the
    phase invariants), not to every other outer copy.
    """
    linear, pairs = [], []
    for r, c in enumerate(copies):
        if c.irrep == "A1" and (c.parity > 0 or not time_reversal):
            linear.append(r)
    for r, cr in enumerate(copies):
        for s in range(r, len(copies)):
            cs = copies[s]
            if cs.irrep != cr.irrep or (cr.irrep == "A1" and cr.parity > 0 and cs.parity > 0):
                continue
            if time_reversal and cr.parity != cs.parity:
                continue
            if inner is not None and r != s and not (inner[r] or inner[s]):
                continue
            pairs.append((r, s))
    return linear, pairs
