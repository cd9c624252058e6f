"""Periodic Bravais lattices of the s-d model: geometry, bonds, triangles, symmetry operations.

Conventions (PHYSICS.md):

* square lattice:     a1 = (1, 0), a2 = (0, 1); nearest neighbours ±a1, ±a2.
* triangular lattice: a1 = (1, 0), a2 = (1/2, √3/2); nearest neighbours ±a1, ±a2, ±(a2 - a1).
* An L × L torus with periodic boundaries; the site with integer coordinates (x, y) sits at
  x·a1 + y·a2 and has index ``i = x + L·y``.

Point-group operations are stored as integer 2 × 2 matrices acting on the integer coordinates
(x, y) about the site 0; ``Lattice.point_group_permutations`` gives them as site permutations
``perm[g, i]`` = index of the image of site ``i`` under operation ``g``. Translations are
permutations too (``Lattice.translation``). The module knows nothing of electrons or networks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

__all__ = ["Lattice", "square", "triangular"]

_SQRT3_2 = math.sqrt(3.0) / 2.0
_BASIS = {
    "square": np.array([[1.0, 0.0], [0.0, 1.0]]),
    "triangular": np.array([[1.0, 0.0], [0.5, _SQRT3_2]]),
}
# Half of the nearest-neighbour vectors, in integer coordinates: each NN pair once.
_HALF_NN = {
    "square": [(1, 0), (0, 1)],
    "triangular": [(1, 0), (0, 1), (-1, 1)],
}
_ORDER = {"square": 4, "triangular": 6}  # order of the rotation axis: D4, D6 = C6v
MIN_L = 3


def _rotation(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


@dataclass(frozen=True)
class Lattice:
    """An ``L × L`` periodic square or triangular lattice.

    Attributes are computed once and cached, on the CPU; ``table(name, device)`` gives (and keeps) a
    copy on another device. Integer index tensors are ``torch.long``; positions are ``torch.float64``.
    """

    kind: str
    L: int

    def __post_init__(self):
        if self.kind not in _BASIS:
            raise ValueError(f"kind must be 'square' or 'triangular', got {self.kind!r}")
        if not isinstance(self.L, (int, np.integer)) or isinstance(self.L, bool):
            raise ValueError(f"L must be an integer >= {MIN_L}, got {self.L!r}")
        if self.L < MIN_L:
            raise ValueError(
                f"L must be >= {MIN_L} so that every nearest-neighbour pair is distinct, got L={self.L}"
            )

    # ---------------------------------------------------------------- geometry
    @property
    def n_sites(self) -> int:
        return self.L * self.L

    @property
    def basis(self) -> np.ndarray:
        """Rows a1, a2 of the primitive vectors (Cartesian)."""
        return _BASIS[self.kind].copy()

    @property
    def coordination(self) -> int:
        return 2 * len(_HALF_NN[self.kind])

    @cached_property
    def coords(self) -> torch.Tensor:
        """Integer coordinates ``[N, 2]`` (x, y) with ``i = x + L·y``."""
        i = torch.arange(self.n_sites)
        return torch.stack([i % self.L, i // self.L], dim=1)

    @cached_property
    def positions(self) -> torch.Tensor:
        """Cartesian positions ``[N, 2]`` (float64), ``r_i = x·a1 + y·a2``."""
        return self.coords.double() @ torch.from_numpy(self.basis)

    def index(self, x, y) -> torch.Tensor:
        """Site index of integer coordinates (any integers; wrapped periodically)."""
        x = torch.as_tensor(x) % self.L
        y = torch.as_tensor(y) % self.L
        return x + self.L * y

    def shifted(self, dx: int, dy: int) -> torch.Tensor:
        """``[N]`` indices of the sites ``r_i + dx·a1 + dy·a2``."""
        c = self.coords
        return self.index(c[:, 0] + dx, c[:, 1] + dy)

    translation = shifted  # a translation as a site permutation

    def table(self, name: str, device=None) -> torch.Tensor:
        """The tensor attribute ``name`` (``"bonds"``, ``"neighbors"``, ``"triangles"``, ``"image_norms"``, ...)
        on ``device`` (default: the CPU, where the attributes live); the copy is kept for later calls."""
        value = getattr(self, name)
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name!r} is not a tensor attribute of the lattice")
        device = torch.device("cpu") if device is None else torch.device(device)
        if device.type == "cpu":
            return value
        copies = self.__dict__.setdefault("_device_tables", {})
        key = (name, str(device))
        if key not in copies:
            copies[key] = value.to(device)
        return copies[key]

    @cached_property
    def image_norms(self) -> torch.Tensor:
        """``[L, L]`` minimum-image length |R| of the lattice vector R = x·a1 + y·a2, indexed ``[y, x]``.

        The shortest of R + m·L·a1 + n·L·a2 over m, n ∈ {-1, 0, 1} (enough on a rhombic torus whose
        basis is reduced, as both of ours are). float64, on the CPU; ``table("image_norms", device)``
        elsewhere.
        """
        c = torch.arange(self.L)
        y, x = torch.meshgrid(c, c, indexing="ij")
        A = torch.from_numpy(self.basis)
        best = torch.full((self.L, self.L), float("inf"), dtype=torch.float64)
        for sx in (-self.L, 0, self.L):
            for sy in (-self.L, 0, self.L):
                best = torch.minimum(best, (torch.stack([x + sx, y + sy], -1).double() @ A).norm(dim=-1))
        return best

    def distances(self, sites=None) -> torch.Tensor:
        """Minimum-image distances ``[len(sites), N]`` (float64) from each of ``sites`` (default: all) to
        every site; on the device of ``sites`` when it is a tensor, else on the CPU."""
        device = sites.device if isinstance(sites, torch.Tensor) else None
        sites = torch.arange(self.n_sites) if sites is None else torch.as_tensor(sites, dtype=torch.long).reshape(-1)
        if sites.numel() and (sites.min() < 0 or sites.max() >= self.n_sites):
            raise ValueError(f"sites must be indices in [0, {self.n_sites}), got {sites.tolist()}")
        c = self.table("coords", device)
        dx = (c[None, :, 0] - c[sites, None, 0]) % self.L
        dy = (c[None, :, 1] - c[sites, None, 1]) % self.L
        return self.table("image_norms", device)[dy, dx]

    # ---------------------------------------------------------------- bonds
    @property
    def nn_vectors(self) -> list[tuple[int, int]]:
        """All nearest-neighbour displacements in integer coordinates (counter-clockwise)."""
        half = _HALF_NN[self.kind]
        return half + [(-a, -b) for a, b in half]

    @cached_property
    def bonds(self) -> torch.Tensor:
        """``[n_bonds, 2]`` nearest-neighbour pairs, each pair once (N·z/2 bonds)."""
        i = torch.arange(self.n_sites)
        return torch.cat([torch.stack([i, self.shifted(dx, dy)], 1) for dx, dy in _HALF_NN[self.kind]])

    @cached_property
    def neighbors(self) -> torch.Tensor:
        """``[N, z]`` nearest neighbours of every site, in the order of ``nn_vectors``."""
        return torch.stack([self.shifted(dx, dy) for dx, dy in self.nn_vectors], dim=1)

    @cached_property
    def triangles(self) -> torch.Tensor:
        """``[n_tri, 3]`` elementary triangles, vertices counter-clockwise.

        Triangular lattice: the N up triangles (r, r+a1, r+a2) first, then the N down triangles
        (r+a1, r+a1+a2, r+a2). Square lattice: empty ``[0, 3]``.
        """
        if self.kind == "square":
            return torch.zeros((0, 3), dtype=torch.long)
        r = torch.arange(self.n_sites)
        up = torch.stack([r, self.shifted(1, 0), self.shifted(0, 1)], 1)
        down = torch.stack([self.shifted(1, 0), self.shifted(1, 1), self.shifted(0, 1)], 1)
        return torch.cat([up, down])

    @cached_property
    def triangle_centers(self) -> torch.Tensor:
        """``[n_tri, 2]`` Cartesian centroids of the triangles (up: r + (a1+a2)/3, down: r + 2(a1+a2)/3)."""
        if self.kind == "square":
            return torch.zeros((0, 2), dtype=torch.float64)
        base = self.coords.double()
        cent = torch.cat([base + 1.0 / 3.0, base + 2.0 / 3.0])
        return cent @ torch.from_numpy(self.basis)

    # ---------------------------------------------------------------- neighbourhoods
    def offsets_within(self, cutoff: float) -> torch.Tensor:
        """Integer displacements ``[K, 2]`` with 0 < |d| <= cutoff, sorted by (|d|, angle)."""
        if not cutoff > 0:
            raise ValueError(f"cutoff must be > 0, got {cutoff}")
        n = int(math.ceil(2 * cutoff)) + 1
        out = []
        for dx in range(-n, n + 1):
            for dy in range(-n, n + 1):
                v = dx * self.basis[0] + dy * self.basis[1]
                d = float(np.hypot(*v))
                if 1e-9 < d <= cutoff + 1e-9:
                    ang = math.atan2(v[1], v[0]) % (2 * math.pi)
                    out.append((round(d, 9), round(ang, 9), dx, dy))
        out.sort()
        return torch.tensor([[dx, dy] for _, _, dx, dy in out], dtype=torch.long).reshape(-1, 2)

    def neighborhood(self, cutoff: float) -> torch.Tensor:
        """``[N, K]`` indices of the sites within ``cutoff`` of each site (excluding itself).

        Raises if the lattice is too small for the neighbourhood to be free of periodic images.
        """
        off = self.offsets_within(cutoff)
        if 2 * cutoff >= self.L:
            raise ValueError(
                f"cutoff={cutoff} needs L > {2 * cutoff:g} on the {self.kind} lattice so that no site "
                f"meets its own periodic image (got L={self.L}); use a larger L or a smaller cutoff"
            )
        return torch.stack([self.shifted(int(dx), int(dy)) for dx, dy in off.tolist()], dim=1)

    # ---------------------------------------------------------------- point group
    @cached_property
    def point_group(self) -> list[tuple[str, np.ndarray]]:
        """Point-group operations about a site: ``(name, R)`` with ``R`` a 2 × 2 Cartesian matrix.

        D4 (8 operations) for the square lattice, D6 = C6v (12) for the triangular lattice:
        rotations ``C{n}^{k}`` by 2πk/n, then mirrors ``m{k}`` = rotation ∘ (y → -y).
        """
        n = _ORDER[self.kind]
        mirror = np.diag([1.0, -1.0])
        ops = [(f"C{n}^{k}" if k else "E", _rotation(2 * math.pi * k / n)) for k in range(n)]
        ops += [(f"m{k}", _rotation(2 * math.pi * k / n) @ mirror) for k in range(n)]
        return ops

    def integer_matrix(self, R: np.ndarray) -> np.ndarray:
        """The operation ``R`` (Cartesian) as an integer matrix on integer coordinates (x, y)."""
        A = self.basis.T  # columns a1, a2
        M = np.linalg.solve(A, R @ A)
        Mi = np.rint(M).astype(np.int64)
        if not np.allclose(M, Mi, atol=1e-9):
            raise ValueError("operation does not map the lattice onto itself")
        return Mi

    def permutation(self, R: np.ndarray, center: int = 0) -> torch.Tensor:
        """``[N]``: image of each site under ``R`` applied about site ``center``."""
        M = torch.from_numpy(self.integer_matrix(R))
        c0 = self.coords[center]
        rel = self.coords - c0
        img = rel @ M.T + c0
        return self.index(img[:, 0], img[:, 1])

    @cached_property
    def point_group_permutations(self) -> torch.Tensor:
        """``[n_ops, N]`` site permutations of the point-group operations about site 0."""
        return torch.stack([self.permutation(R) for _, R in self.point_group])

    def __repr__(self) -> str:
        return f"Lattice(kind={self.kind!r}, L={self.L}, n_sites={self.n_sites})"


def square(L: int) -> Lattice:
    """An ``L × L`` periodic square lattice."""
    return Lattice("square", L)


def triangular(L: int) -> Lattice:
    """An ``L × L`` periodic triangular lattice (a rhombus spanned by L·a1 and L·a2)."""
    return Lattice("triangular", L)
