"""Finite point groups from their 2 × 2 matrices: classes, character tables, irreducible matrices.

Nothing here is typed in from a table. From the Cartesian matrices of the site point group
(``Lattice.point_group``: D4 for the square lattice, C6v = D6 for the triangular lattice) we compute

1. the multiplication table ``g·h`` by composing matrices;
2. the conjugacy classes ``C_k = {x g x⁻¹}``;
3. the character table by Burnside's algorithm: the class sums ``K_i = Σ_{g∈C_i} g`` multiply as
   ``K_i K_j = Σ_k c_ij^k K_k``; in an irreducible representation Γ of dimension d each ``K_i`` acts
   as the scalar ``ω_i = |C_i| χ_i / d``, so ``(ω_k)_k`` is a common eigenvector of the matrices
   ``(M_i)_jk = c_ij^k`` with eigenvalue ``ω_i``. We diagonalise a random real combination of the
   ``M_i`` (its eigenvalues are distinct because the character table is invertible), normalise
   ``ω_E = 1`` and fix d from the orthogonality ``Σ_k |C_k| |χ_k|² = |G|``
   (Burnside 1911; Dixon, Numer. Math. 10, 446 (1967));
4. explicit orthogonal matrices of every irrep. A one-dimensional irrep is its character. A
   two-dimensional irrep of a dihedral group is the "angle-multiplied" representation
   ``D^(m)(R_θ) = R_{mθ}``, ``D^(m)(R_θ σ) = R_{mθ} σ`` (σ = diag(1, -1)); we pick the ``m`` whose
   trace reproduces the computed character and check it for every element.

Irrep names follow the usual chemistry labels, read off the computed characters: A/B for
``χ(C_n) = ±1``, subscript 1/2 for ``χ(m0) = ±1`` where ``m0`` is the mirror ``y → -y`` (its line
contains the bond a1), E (E1, E2 for C6v) for the two-dimensional irreps with ``χ(C_n) = 2cos(2πm/n)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["PointGroup", "Irrep"]

_TOL = 1e-9


@dataclass
class Irrep:
    """One irreducible representation: ``name``, dimension ``dim``, ``characters[g]`` per element,
    and orthogonal ``matrices[g]`` of shape ``[dim, dim]``."""

    name: str
    dim: int
    characters: np.ndarray
    matrices: np.ndarray = field(repr=False)


def _rotation(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


class PointGroup:
    """A finite group of orthogonal 2 × 2 matrices, with its classes and irreducible representations.

    Parameters
    ----------
    operations : list of ``(name, R)`` pairs, ``R`` a 2 × 2 orthogonal matrix; the list must be
        closed under multiplication and contain the identity.
    """

    def __init__(self, operations):
        self.names = [n for n, _ in operations]
        self.matrices = np.array([np.asarray(R, dtype=float) for _, R in operations])
        self.order = len(self.matrices)
        self.table = self._multiplication_table()
        self.identity = self._find(np.eye(2))
        self.inverse = np.array([int(np.where(self.table[g] == self.identity)[0][0]) for g in range(self.order)])
        self.classes = self._conjugacy_classes()
        self.class_of = np.empty(self.order, dtype=int)
        for k, c in enumerate(self.classes):
            self.class_of[c] = k
        self.irreps = self._irreps()

    # ------------------------------------------------------------------ group structure
    def _find(self, R: np.ndarray) -> int:
        hit = np.where(np.abs(self.matrices - R).reshape(self.order, -1).max(1) < 1e-8)[0]
        if len(hit) != 1:
            raise ValueError("operations are not closed under multiplication")
        return int(hit[0])

    def _multiplication_table(self) -> np.ndarray:
        """``table[g, h]`` = index of ``R_g @ R_h``."""
        return np.array([[self._find(a @ b) for b in self.matrices] for a in self.matrices])

    def _conjugacy_classes(self) -> list[np.ndarray]:
        seen, classes = set(), []
        for g in range(self.order):
            if g in seen:
                continue
            cls = sorted({int(self.table[self.table[x, g], self.inverse[x]]) for x in range(self.order)})
            seen.update(cls)
            classes.append(np.array(cls))
        return classes

    def class_constants(self) -> np.ndarray:
        """``c[i, j, k]``: number of pairs (x ∈ C_i, y ∈ C_j) with x·y = z for a fixed z ∈ C_k."""
        n = len(self.classes)
        c = np.zeros((n, n, n))
        for k, ck in enumerate(self.classes):
            z = ck[0]
            for i, ci in enumerate(self.classes):
                for x in ci:
                    y = self.table[self.inverse[x], z]  # x·y = z
                    c[i, self.class_of[y], k] += 1
        return c

    # ------------------------------------------------------------------ characters (Burnside)
    def character_table(self) -> tuple[np.ndarray, np.ndarray]:
        """``(chi, dims)``: ``chi[Γ, k]`` character of irrep Γ on class k, ``dims[Γ]``.

        Burnside's algorithm (module docstring). Rows are unsorted; ``_irreps`` orders them.
        """
        c = self.class_constants()
        n = len(self.classes)
        sizes = np.array([len(cl) for cl in self.classes], dtype=float)
        rng = np.random.default_rng(12345)
        M = np.einsum("i,ijk->jk", rng.normal(size=n), c)  # (M)_jk = Σ_i a_i c_ij^k
        vals, vecs = np.linalg.eig(M)  # ω_i ω_j = Σ_k c_ij^k ω_k: ω is a right eigenvector of every M_i
        if np.min(np.abs(vals[:, None] - vals[None, :]) + np.eye(n) * 1e9) < 1e-6:
            raise RuntimeError("class-sum combination has degenerate eigenvalues; retry with another seed")
        e = self.class_of[self.identity]
        chis, dims = [], []
        for v in vecs.T:
            w = np.real_if_close(v / v[e], tol=1e6)
            d = math.sqrt(self.order / np.sum(np.abs(w) ** 2 / sizes))
            chis.append(d * w / sizes)
            dims.append(int(round(d)))
        chi = np.real(np.array(chis))
        snapped = np.round(chi)  # characters are algebraic integers; snap the rational ones exactly
        chi = np.where(np.abs(chi - snapped) < _TOL, snapped, chi)
        return chi, np.array(dims)

    # ------------------------------------------------------------------ irreducible matrices
    def _two_dim_matrices(self, chi_g: np.ndarray) -> np.ndarray:
        """Orthogonal 2 × 2 matrices ``D^(m)`` whose traces equal ``chi_g`` (see module docstring)."""
        det = np.round(np.linalg.det(self.matrices)).astype(int)
        sigma = np.diag([1.0, -1.0])
        for m in range(1, self.order):
            mats = []
            for R, d in zip(self.matrices, det):
                rot = R if d > 0 else R @ sigma  # R = R_θ (proper) or R_θ σ (mirror)
                th = math.atan2(rot[1, 0], rot[0, 0])
                mats.append(_rotation(m * th) if d > 0 else _rotation(m * th) @ sigma)
            mats = np.array(mats)
            if np.allclose(np.trace(mats, axis1=1, axis2=2), chi_g, atol=1e-8):
                return mats
        raise RuntimeError("no angle-multiplied representation reproduces the character")

    def _name(self, chi_g: np.ndarray, dim: int, n_rot: int) -> tuple[str, int]:
        c_n = self._find(_rotation(2 * math.pi / n_rot))
        m0 = self._find(np.diag([1.0, -1.0]))
        if dim == 1:
            letter = "A" if chi_g[c_n] > 0 else "B"
            return f"{letter}{1 if chi_g[m0] > 0 else 2}", 0 if letter == "A" else 2
        m = int(round(math.acos(np.clip(chi_g[c_n] / 2, -1, 1)) * n_rot / (2 * math.pi)))
        return "E" if n_rot == 4 else f"E{m}", 3 + m

    def _irreps(self) -> list[Irrep]:
        chi, dims = self.character_table()
        n_rot = int(np.sum(np.round(np.linalg.det(self.matrices)) > 0))
        out = []
        for row, d in zip(chi, dims):
            chi_g = row[self.class_of]
            if d == 1:
                mats = chi_g.reshape(-1, 1, 1).copy()
            elif d == 2:
                mats = self._two_dim_matrices(chi_g)
            else:
                raise RuntimeError(f"irrep of dimension {d}: not a dihedral group")
            name, key = self._name(chi_g, d, n_rot)
            out.append((key, name, Irrep(name, d, chi_g, mats)))
        out.sort(key=lambda t: (t[0], t[1]))
        return [ir for _, _, ir in out]

    def class_names(self) -> list[str]:
        """A readable label per class: the names of its elements joined by commas."""
        return [",".join(self.names[g] for g in cl) for cl in self.classes]
