"""Which frames to label: committee disagreement, a uniform share, and ordered configurations.

Committee disagreement (query by committee; as in DP-GEN, Zhang et al., Comput. Phys. Commun. 253,
107206 (2020)): M networks trained on different seeds and splits predict torques T_i^m = S_i × H_i^m;
the spread at site i is

    σ_i = sqrt( (1/M) Σ_m |T_i^m − T̄_i|² ),    T̄_i = (1/M) Σ_m T_i^m,

and a frame's score is its largest per-site spread max_i σ_i (units of t): the frames where at
least one neighbourhood is unlike anything the networks agree on. :func:`select_frames` keeps the
highest-scoring frames and draws a stated fraction uniformly from the rest, so the set is not only
edge cases. :func:`ordered_configurations` adds what quenches rarely visit: ferromagnetic
droplets in a Néel background (square) and chiral domain walls, straight and curved, between
tetrahedral domains of opposite chirality (triangular), with small random tilts.
"""
from __future__ import annotations

import math

import torch

from ..committee import Committee

__all__ = ["torque_spread", "disagreement", "select_frames", "ordered_configurations"]


def torque_spread(committee, spins: torch.Tensor, batch: int = 4) -> torch.Tensor:
    """σ_i ``[M, N]`` of the committee (a list of force fields, ≥ 2) on frames ``spins [M, N, 3]``
    (``sdlib.committee.Committee.spread``)."""
    return Committee(committee).spread(spins, batch)


def disagreement(committee, spins: torch.Tensor, batch: int = 4) -> torch.Tensor:
    """Score ``[M]`` of each frame: the largest per-site torque spread max_i σ_i."""
    return torque_spread(committee, spins, batch).amax(-1)


def select_frames(scores: torch.Tensor, n: int, uniform_fraction: float, seed: int = 0):
    """Indices of ``n`` frames: the ``n − round(n·uniform_fraction)`` highest ``scores`` (largest first),
    then ``round(n·uniform_fraction)`` drawn uniformly (seeded) from the others.

    Returns ``(index [n], uniform [n] bool)``; ``n`` larger than the pool takes every frame.
    """
    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    if not (isinstance(n, int) and n >= 0):
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    if not 0 <= uniform_fraction <= 1:
        raise ValueError(f"uniform_fraction must lie in [0, 1], got {uniform_fraction!r}")
    if not torch.isfinite(scores).all():
        raise ValueError("scores must be finite (a network gave non-finite torques?)")
    n = min(n, scores.numel())
    n_uniform = round(n * uniform_fraction)
    order = torch.argsort(scores, descending=True, stable=True)
    top, rest = order[:n - n_uniform], order[n - n_uniform:]
    g = torch.Generator().manual_seed(seed)
    drawn = rest[torch.randperm(rest.numel(), generator=g)[:n_uniform]]
    index = torch.cat([top, drawn])
    return index, torch.cat([torch.zeros(len(top), dtype=torch.bool), torch.ones(len(drawn), dtype=torch.bool)])


def _tetrahedral(lattice) -> torch.Tensor:
    """Four-sublattice tetrahedral state ``[N, 3]`` (sublattice from the parities of x and y)."""
    v = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64) / math.sqrt(3)
    c = lattice.coords
    return v[(c[:, 0] % 2) + 2 * (c[:, 1] % 2)]


def _tilt(spins: torch.Tensor, amplitude: float, g: torch.Generator) -> torch.Tensor:
    s = spins + amplitude * torch.randn(spins.shape, generator=g, dtype=torch.float64)
    return s / s.norm(dim=-1, keepdim=True)


def ordered_configurations(lattice, n: int, seed: int = 0, tilt: float = 0.15) -> tuple[torch.Tensor, list[str]]:
    """``n`` ordered / near-ordered frames ``[n, N, 3]`` and their names.

    Square: a Néel state holding 1–3 ferromagnetic discs of radius 2–L/4 ("fm-droplets"), every
    third frame a straight FM stripe instead ("fm-stripe"). Triangular: tetrahedral domains of
    opposite chirality (S → −S flips χ) split by a straight wall along a1 ("wall-straight") or a
    disc ("wall-curved"). Each frame is rotated globally at random and tilted by Gaussian noise
    of width ``tilt``.
    """
    if not (isinstance(n, int) and n >= 0):
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    pos, L, N = lattice.positions, lattice.L, lattice.n_sites
    frames, names = [], []
    for k in range(n):
        centre = torch.rand(2, generator=g, dtype=torch.float64) * L
        r = 2 + torch.rand((), generator=g, dtype=torch.float64).item() * max(L / 4 - 2, 0.5)
        if lattice.kind == "square":
            c = lattice.coords
            base = torch.zeros(N, 3, dtype=torch.float64)
            base[:, 2] = 1 - 2 * ((c[:, 0] + c[:, 1]) % 2).double()  # Néel
            if k % 3 == 2:
                inside, name = ((c[:, 1] - int(centre[1])) % L) < max(2, int(r)), "fm-stripe"
            else:
                inside = torch.zeros(N, dtype=torch.bool)
                for _ in range(1 + k % 3):
                    inside |= _periodic(lattice, torch.rand(2, generator=g, dtype=torch.float64) * L) < r
                name = "fm-droplets"
            base[inside, 2] = 1.0
        else:
            base = _tetrahedral(lattice)
            if k % 2 == 0:
                inside, name = pos[:, 1] % (L * math.sqrt(3) / 2) < L * math.sqrt(3) / 4, "wall-straight"
            else:
                inside, name = _periodic(lattice, centre) < r, "wall-curved"
            base[inside] = -base[inside]
        rot = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))[0]
        frames.append(_tilt(base @ rot.T, tilt, g))
        names.append(name)
    if not frames:
        return torch.zeros(0, N, 3, dtype=torch.float64), []
    return torch.stack(frames), names


def _periodic(lattice, centre: torch.Tensor) -> torch.Tensor:
    """Minimum-image distance ``[N]`` of every site from a point ``centre`` (Cartesian) of the torus."""
    basis = torch.from_numpy(lattice.basis).double()  # rows a1, a2
    frac = torch.linalg.solve(basis.T, (lattice.positions.double() - centre).T).T  # coordinates in a1, a2
    frac = (frac + lattice.L / 2) % lattice.L - lattice.L / 2
    best = None
    for m in (-1, 0, 1):
        for q in (-1, 0, 1):
            d = ((frac + torch.tensor([m, q], dtype=torch.float64) * lattice.L) @ basis).norm(dim=-1)
            best = d if best is None else torch.minimum(best, d)
    return best

