"""The neighbourhood of a site: its sites, bond variables, chirality variables and their symmetry.

The neighbourhood 𝒞_i of site i is {i} ∪ {i + d : 0 < |d| ≤ r_c} (offsets from
``Lattice.offsets_within``, the centre first). On it we use SO(3)-invariant variables of the spins:

* bond variables ``b_jk = S_j · S_k`` for (a) every nearest-neighbour pair inside 𝒞_i and (b) every
  pair (i, j) of the centre with another site of 𝒞_i — (a) sees the local texture, (b) the spin
  correlations of the centre out to r_c;
* scalar chiralities ``χ_jkl = S_j · (S_k × S_l)`` of small triangles inside 𝒞_i, vertices
  counter-clockwise: the elementary triangles (all sides 1) on the triangular lattice; on the
  square lattice the right-angled halves of plaquettes (legs 1, hypotenuse √2; four per
  plaquette), the smallest triangles the square lattice has. Both sets are fixed by the point group.

A point-group operation g (rotation or mirror about i, acting on positions only — the s-d model
has no spin-orbit coupling) maps the variables onto each other. For the configuration
``(gS)_{g(j)} = S_j`` the variables become ``v(gS) = D(g) v(S)`` with a signed permutation matrix:
``D(g)[g(a), a] = +1`` for bonds, and ``±1`` for triangles, −1 when g reverses the orientation
(mirrors, det R = −1): chiralities are pseudo-scalars. Under time reversal S → −S bonds are even and
chiralities odd. Everything here depends on the lattice kind and r_c only, not on L.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from ..lattice import Lattice

__all__ = ["Neighborhood", "DEFAULT_CUTOFF", "TRIANGLE_SIDE"]

DEFAULT_CUTOFF = {"square": 2.3, "triangular": 2.0}  # shells up to √5 and 2
TRIANGLE_SIDE = {"square": math.sqrt(2.0), "triangular": 1.0}  # longest side of a "small" triangle
_EPS = 1e-9


def _area2(p: np.ndarray) -> float:
    """Twice the signed area of the triangle p[0], p[1], p[2] (> 0 counter-clockwise)."""
    a, b = p[1] - p[0], p[2] - p[0]
    return float(a[0] * b[1] - a[1] * b[0])


class Neighborhood:
    """Sites, bond pairs, triangles and the signed permutation representation of one neighbourhood.

    Attributes
    ----------
    offsets : ``[K, 2]`` integer displacements, ``offsets[0] = (0, 0)`` the centre.
    bonds : ``[n_bonds, 2]`` indices into ``offsets``; triangles : ``[n_tri, 3]`` (CCW).
    parity : ``[n_var]`` time-reversal parity, +1 bonds, −1 chiralities (variables: bonds first).
    rep : ``[n_ops, n_var, n_var]`` signed permutation matrices ``D(g)``.
    orbits : list of index arrays, the orbits of the variables under the point group.
    """

    def __init__(self, lattice: Lattice, cutoff: float | None = None):
        kind = lattice.kind
        cutoff = DEFAULT_CUTOFF[kind] if cutoff is None else cutoff
        try:
            cutoff = float(cutoff)
        except (TypeError, ValueError):
            raise ValueError(f"cutoff must be a real number >= 1, got {cutoff!r}") from None
        if not (math.isfinite(cutoff) and 1.0 <= cutoff <= 10.0):
            raise ValueError(f"cutoff must be between 1 and 10 lattice constants, got {cutoff!r}")
        self.kind, self.cutoff = kind, cutoff
        self._basis = lattice.basis
        self.offsets = np.vstack([[0, 0], lattice.offsets_within(cutoff).numpy()]).astype(np.int64)
        self.positions = self.offsets @ self._basis
        self._index = {tuple(o): k for k, o in enumerate(self.offsets.tolist())}
        self.bonds = self._bond_pairs()
        self.triangles = self._small_triangles(TRIANGLE_SIDE[kind])
        self.parity = np.concatenate([np.ones(len(self.bonds)), -np.ones(len(self.triangles))])
        self.ops = [(name, lattice.integer_matrix(R), R) for name, R in lattice.point_group]
        self.rep = np.stack([self._signed_permutation(M) for _, M, _ in self.ops])
        self.orbits = self._orbits()

    @property
    def n_sites(self) -> int:
        return len(self.offsets)

    @property
    def n_variables(self) -> int:
        return len(self.bonds) + len(self.triangles)

    # ------------------------------------------------------------------ variables
    def _dist(self, j: int, k: int) -> float:
        return float(np.linalg.norm(self.positions[j] - self.positions[k]))

    def _bond_pairs(self) -> np.ndarray:
        K = self.n_sites
        pairs = [(j, k) for j, k in itertools.combinations(range(K), 2)
                 if j == 0 or self._dist(j, k) <= 1.0 + _EPS]
        return np.array(pairs, dtype=np.int64).reshape(-1, 2)

    def _small_triangles(self, side: float) -> np.ndarray:
        out = []
        for tri in itertools.combinations(range(self.n_sites), 3):
            if all(self._dist(a, b) <= side + _EPS for a, b in itertools.combinations(tri, 2)):
                j, k, l = tri
                out.append((j, k, l) if _area2(self.positions[list(tri)]) > 0 else (j, l, k))
        return np.array(out, dtype=np.int64).reshape(-1, 3)

    # ------------------------------------------------------------------ symmetry
    def _image(self, M: np.ndarray, sites) -> list[int]:
        img = [tuple((M @ self.offsets[s]).tolist()) for s in sites]
        return [self._index[t] for t in img]

    def _signed_permutation(self, M: np.ndarray) -> np.ndarray:
        """``D[b, a] = ±1`` where variable b is the image of variable a under the operation M."""
        nb, n = len(self.bonds), self.n_variables
        D = np.zeros((n, n))
        bond_id = {frozenset(p): a for a, p in enumerate(self.bonds.tolist())}
        tri_id = {frozenset(t): a for a, t in enumerate(self.triangles.tolist())}
        for a, (j, k) in enumerate(self.bonds.tolist()):
            D[bond_id[frozenset(self._image(M, (j, k)))], a] = 1.0
        for a, tri in enumerate(self.triangles.tolist()):
            img = self._image(M, tri)
            sign = 1.0 if _area2(self.positions[img]) > 0 else -1.0
            D[nb + tri_id[frozenset(img)], nb + a] = sign
        return D

    def _orbits(self) -> list[np.ndarray]:
        support = np.abs(self.rep).sum(0) > 0  # [b, a]: b is an image of a
        seen, orbits = np.zeros(self.n_variables, bool), []
        for a in range(self.n_variables):
            if not seen[a]:
                orb = np.where(support[:, a])[0]
                seen[orb] = True
                orbits.append(orb)
        return orbits

    def orbit_radii(self) -> np.ndarray:
        """``[n_orbits]``: the largest distance from the centre of a site of the orbit's variables
        (the same for every variable of an orbit: the point group fixes the centre)."""
        nb = len(self.bonds)
        sites = lambda a: self.bonds[a] if a < nb else self.triangles[a - nb]  # noqa: E731
        return np.array([np.linalg.norm(self.positions[sites(orb[0])], axis=1).max() for orb in self.orbits])

    def orbit_labels(self) -> list[str]:
        """Human-readable label per orbit, e.g. ``'bond |r|=1.00 (centre)'`` or ``'chirality d=1.15'``."""
        labels, nb = [], len(self.bonds)
        for orb in self.orbits:
            a = orb[0]
            if a < nb:
                j, k = self.bonds[a]
                where = "centre" if j == 0 else f"mid {np.linalg.norm(self.positions[[j, k]].mean(0)):.2f}"
                labels.append(f"bond |r|={self._dist(j, k):.2f} ({where})")
            else:
                c = self.positions[self.triangles[a - nb]].mean(0)
                labels.append(f"chirality d={np.linalg.norm(c):.2f}")
        return labels

    def site_index(self, lattice: Lattice) -> "np.ndarray":
        """``[N, K]`` lattice indices of the neighbourhood of every site (centre first).

        Raises ``ValueError`` if L is too small for the neighbourhood to be free of periodic images.
        """
        if lattice.kind != self.kind:
            raise ValueError(f"lattice kind {lattice.kind!r} differs from the descriptor's {self.kind!r}")
        lattice.neighborhood(self.cutoff)  # raises with a clear message when L is too small
        return np.stack([lattice.shifted(int(dx), int(dy)).numpy() for dx, dy in self.offsets], axis=1)
