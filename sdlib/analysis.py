"""Observables of spin configurations: chirality, bond field, structure factors, domain sizes, clusters.

Nothing here knows how the spins were made. Spins are ``[N, 3]`` or ``[B, N, 3]`` tensors on an
sdlib :class:`~sdlib.lattice.Lattice`; functions that return fields keep the batch dimension.
Every function computes on the device of its tensor input and returns tensors there (the lattice's
tables are taken with ``Lattice.table(name, device)``); functions of the lattice alone take a
``device`` (default the CPU); ``fm_clusters``, ``cluster_length`` and ``growth_exponent`` return NumPy
arrays or floats, whatever the device of their input.

Conventions
-----------
* Scalar chirality of a counter-clockwise triangle (i, j, k): χ = S_i · (S_j × S_k).
  The tetrahedral state has χ = ±4/(3√3) on every triangle.
* Bond field φ_i = (1/z) Σ_{j ∈ nn(i)} S_i · S_j (z = 4 square, 6 triangular): +1 FM, -1 Néel.
* Structure factor of a scalar field φ on points r: S(q) = |Σ_r φ_r e^{-iq·r}|² / n_points on the
  q-grid q = (m1 b1 + m2 b2)/L of the L × L torus (b_a reciprocal to a_a, b_a·a_b = 2π δ_ab);
  the mean of φ is subtracted first (the q = 0 Bragg term of a net magnetisation/chirality carries
  no length scale).
* Domain length, two estimators:
  - ``correlation_length``: the distance r at which the circularly averaged, normalised
    correlation C(r) = ⟨δφ(x) δφ(x+r)⟩ / ⟨δφ²⟩ first falls to 1/2 (linear interpolation between
    shells). Exactly ∝ ℓ for self-similar domain patterns of size ℓ; the default of the chapters.
  - ``domain_length``: L = 2π / ⟨|q|⟩ with ⟨|q|⟩ = Σ_{q≠0} |q| S(q) / Σ_{q≠0} S(q), |q| of the
    shortest representative q + G: the inverse first moment of the small-q peak. Sharp domain
    walls give the Porod tail S(q) ∝ q^{-3}, which makes ⟨|q|⟩ pick up a log(ℓ/a) correction, so
    this estimator grows slightly slower than ℓ; it is kept for comparison.
  - ``wall_length`` (triangle fields): area per unit length of domain wall, ℓ_w = A / n_w, with
    n_w the number of edges between triangles of opposite sign; the real-space Ising estimator.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .lattice import Lattice

__all__ = [
    "chirality", "bond_field", "fm_bond_fraction", "fm_sites", "check_fm_fraction", "FM_SITE_FRACTION", "nn_correlation", "magnetization", "structure_factor",
    "q_norms", "domain_length", "correlation_function", "correlation_length", "fm_clusters", "cluster_length", "growth_exponent",
    "sample_exponents", "onset_time", "largest_deviation",
    "FitWindow", "fit_window",
    "triangle_pairs", "wall_length", "radial_average", "mean_and_error", "wall_anisotropy",
]


def chirality(spins: torch.Tensor, lattice: Lattice) -> torch.Tensor:
    """χ on every triangle of ``lattice.triangles`` (CCW), ``[..., n_tri]``."""
    t = lattice.table("triangles", spins.device)
    a, b, c = spins[..., t[:, 0], :], spins[..., t[:, 1], :], spins[..., t[:, 2], :]
    return (a * torch.linalg.cross(b, c, dim=-1)).sum(-1)


def bond_field(spins: torch.Tensor, lattice: Lattice) -> torch.Tensor:
    """φ_i = (1/z) Σ_nn S_i·S_j, ``[..., N]``."""
    nb = spins[..., lattice.table("neighbors", spins.device), :]  # [..., N, z, 3]
    return (spins[..., :, None, :] * nb).sum(-1).mean(-1)


def fm_bond_fraction(spins: torch.Tensor, lattice: Lattice) -> torch.Tensor:
    """Fraction of each site's nearest-neighbour bonds that are ferromagnetic (S_i·S_j > 0), ``[..., N]``.

    On the square lattice 0 is a site in the Néel background and ≥ 3/4 a site inside an FM cluster
    (the classes of the locality measurement and of ``training.FMSiteWeights``)."""
    nb = spins[..., lattice.table("neighbors", spins.device), :]  # [..., N, z, 3]
    return ((spins[..., :, None, :] * nb).sum(-1) > 0).to(spins.dtype).mean(-1)


FM_SITE_FRACTION = 0.75
"""Fraction of a site's NN bonds that must be ferromagnetic for the site to count as inside an FM
cluster (our choice: 3 of 4 on the square lattice; a site at a straight cluster edge has 3)."""


def fm_sites(spins: torch.Tensor, lattice: Lattice, min_fraction: float = FM_SITE_FRACTION) -> torch.Tensor:
    """Boolean ``[..., N]``: the sites with at least ``min_fraction`` (in (0, 1]) of their nearest-neighbour
    bonds ferromagnetic (:func:`fm_bond_fraction`) — the FM-cluster class of chapter 03's locality
    measurement, of the loss weights ``training.FMSiteWeights`` and of chapter 05's committee check."""
    return fm_bond_fraction(spins, lattice) >= check_fm_fraction(min_fraction) - 1e-12


def check_fm_fraction(min_fraction) -> float:
    """``min_fraction`` of :func:`fm_sites` as a float in (0, 1] (a ValueError naming it otherwise)."""
    if not (isinstance(min_fraction, (int, float)) and 0.0 < min_fraction <= 1.0):
        raise ValueError(f"min_fraction (of FM bonds) must be in (0, 1], got {min_fraction!r}")
    return float(min_fraction)


def nn_correlation(spins: torch.Tensor, lattice: Lattice) -> torch.Tensor:
    """Mean nearest-neighbour correlation ⟨S_i·S_j⟩ over all bonds, ``[...]``."""
    b = lattice.table("bonds", spins.device)
    return (spins[..., b[:, 0], :] * spins[..., b[:, 1], :]).sum(-1).mean(-1)


def magnetization(spins: torch.Tensor) -> torch.Tensor:
    """|Σ_i S_i| / N, ``[...]``."""
    return spins.mean(-2).norm(dim=-1)


def _reciprocal(lattice: Lattice) -> np.ndarray:
    """Rows b1, b2 with b_a · a_b = 2π δ_ab."""
    return 2 * np.pi * np.linalg.inv(lattice.basis).T


def _shortest_q(lattice: Lattice) -> np.ndarray:
    """``[L, L, 2]`` shortest representative q + G of q = (m1 b1 + m2 b2)/L, indexed [m2, m1]."""
    L = lattice.L
    B = _reciprocal(lattice)
    m = np.arange(L) / L
    m1, m2 = np.meshgrid(m, m, indexing="xy")  # shape [m2, m1]
    best, vec = np.full(m1.shape, np.inf), np.zeros(m1.shape + (2,))
    for g1 in (-1, 0, 1):
        for g2 in (-1, 0, 1):
            q = np.multiply.outer(m1 + g1, B[0]) + np.multiply.outer(m2 + g2, B[1])
            norm = np.linalg.norm(q, axis=-1)
            shorter = norm < best - 1e-12
            best, vec = np.where(shorter, norm, best), np.where(shorter[..., None], q, vec)
    return vec


def q_norms(lattice: Lattice, device=None) -> torch.Tensor:
    """``[L, L]`` |q| (float64, on ``device``) of the shortest representative of q = (m1 b1 + m2 b2)/L,
    indexed [m2, m1]."""
    return torch.from_numpy(np.linalg.norm(_shortest_q(lattice), axis=-1)).to(device)


def _fourier(field: torch.Tensor, lattice: Lattice) -> tuple[torch.Tensor, int]:
    """FFT of the mean-subtracted field per Bravais sub-lattice: ``[..., sub, L, L]`` indexed [m2, m1].

    F = Σ_r δφ_r e^{-2πi (m1 x + m2 y)/L} with i = x + L y; ``sub`` is 1 (site field, N entries)
    or 2 (up and down triangles, 2N entries). Also returns the number of entries.
    """
    L, N = lattice.L, lattice.n_sites
    n = field.shape[-1]
    if n not in (N, 2 * N):
        raise ValueError(f"field must have N={N} (sites) or 2N={2 * N} (triangles) entries, got {n}")
    phi = field.to(torch.float64)
    phi = phi - phi.mean(-1, keepdim=True)
    return torch.fft.fft2(phi.reshape(*phi.shape[:-1], n // N, L, L)), n


def structure_factor(field: torch.Tensor, lattice: Lattice) -> torch.Tensor:
    """S(q) ``[..., L, L]`` (indexed [m2, m1]) of a site field ``[..., N]`` or triangle field ``[..., 2N]``.

    A triangle field (the chirality) lives on the up (r + (a1+a2)/3) and down (r + 2(a1+a2)/3)
    triangles: the two sub-lattices are combined with their phase factors e^{-iq·δ}, δ = (a1+a2)/3,
    taken at the shortest representative q of each grid point (the field on the two sub-lattices
    is not periodic under the Bravais reciprocal lattice, so S(q) depends on the representative;
    the shortest one makes S(-q) = S(q) and puts the small-q domain peak at small |q|; on the zone
    boundary, where several are equally short, the first in a fixed search order is taken).
    """
    N = lattice.n_sites
    F, n = _fourier(field, lattice)
    if n == 2 * N:
        delta = lattice.basis.sum(0) / 3
        phase = torch.exp(-1j * torch.from_numpy(_shortest_q(lattice) @ delta)).to(F.device)
        F = F[..., 0, :, :] + phase * F[..., 1, :, :]
    else:
        F = F[..., 0, :, :]
    return F.abs() ** 2 / n


def domain_length(Sq: torch.Tensor, lattice: Lattice) -> torch.Tensor:
    """L = 2π / ⟨|q|⟩ from a structure factor ``[..., L, L]`` (module docstring)."""
    q = q_norms(lattice, Sq.device).to(Sq.dtype)
    w = Sq.clone()
    w[..., 0, 0] = 0.0
    return 2 * math.pi * w.sum((-1, -2)) / (w * q).sum((-1, -2))


def correlation_function(field: torch.Tensor, lattice: Lattice) -> tuple[torch.Tensor, torch.Tensor]:
    """Circularly averaged C(r) of a site ``[..., N]`` or triangle ``[..., 2N]`` field.

    Returns shell radii ``[n_shell]`` (minimum-image |R|, ``Lattice.image_norms``) and C
    ``[..., n_shell]`` with C(0) = 1. Correlations are taken within each Bravais sub-lattice of the
    field (up and down triangles separately, then averaged), by FFT.
    """
    F, _ = _fourier(field, lattice)
    corr = torch.fft.ifft2(F.abs() ** 2).real.sum(-3)  # [..., y, x]
    corr = corr / corr[..., :1, :1].clamp_min(1e-300)
    r = lattice.table("image_norms", corr.device).reshape(-1)
    shells, inverse = torch.unique(torch.round(r * 1e6) / 1e6, return_inverse=True)
    flat = corr.reshape(*corr.shape[:-2], -1)
    total = flat.new_zeros(*flat.shape[:-1], len(shells)).index_add_(-1, inverse, flat)
    count = r.new_zeros(len(shells)).index_add_(0, inverse, torch.ones_like(r))
    return shells, total / count


def correlation_length(field: torch.Tensor, lattice: Lattice, level: float = 0.5) -> torch.Tensor:
    """Distance where C(r) first falls below ``level`` (linear interpolation), ``[...]``."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    r, C = correlation_function(field, lattice)
    below = C < level
    below[..., -1] = True  # never beyond the largest shell
    k = below.to(torch.int8).argmax(-1).clamp_min(1)
    c0 = C.gather(-1, (k - 1)[..., None])[..., 0]
    c1 = C.gather(-1, k[..., None])[..., 0]
    r0, r1 = r[k - 1], r[k]
    return r0 + (c0 - level) / (c0 - c1).clamp_min(1e-300) * (r1 - r0)


def triangle_pairs(lattice: Lattice, device=None) -> torch.Tensor:
    """``[3N, 2]`` edge-sharing (up, down) triangle pairs, as indices into ``lattice.triangles`` (on ``device``).

    The up triangle (r, r+a1, r+a2) shares its edges with the down triangles at r (edge r+a1, r+a2),
    r - a2 (edge r, r+a1) and r - a1 (edge r, r+a2); each shared edge appears once.
    """
    if lattice.kind != "triangular":
        raise ValueError(f"triangle pairs need the triangular lattice, got {lattice.kind!r}")
    N, up = lattice.n_sites, torch.arange(lattice.n_sites, device="cpu")
    down = [up, lattice.shifted(0, -1), lattice.shifted(-1, 0)]
    return torch.cat([torch.stack([up, N + d], 1) for d in down]).to(device)


def wall_length(field: torch.Tensor, lattice: Lattice) -> torch.Tensor:
    """Domain length ℓ_w = A / n_w of a triangle field ``[..., 2N]`` (e.g. the chirality), ``[...]``.

    n_w is the number of lattice edges whose two triangles have field values of opposite sign,
    A = N √3/2 the area of the torus (unit bond length): the inverse wall length per unit area.
    Stripes of width w (walls along a lattice direction) give ℓ_w = w exactly; walls at an angle
    to the lattice directions are zigzags of edges, longer by up to 2/√3. No wall gives ``inf``.
    """
    if field.shape[-1] != 2 * lattice.n_sites:
        raise ValueError(f"field must have 2N={2 * lattice.n_sites} entries (one per triangle), got {field.shape[-1]}")
    p = triangle_pairs(lattice, field.device)
    walls = (torch.sign(field[..., p[:, 0]]) * torch.sign(field[..., p[:, 1]]) < 0).sum(-1)
    return lattice.n_sites * math.sqrt(3) / 2 / walls.to(torch.float64)


def radial_average(Sq: torch.Tensor, lattice: Lattice) -> tuple[torch.Tensor, torch.Tensor]:
    """Circular average of S(q) ``[..., L, L]`` in shells of width Δq = 2π/(L a) about k Δq, k ≥ 1.

    Δq is the smallest nonzero |q| of the torus; q = 0 is left out. Returns the mean |q| of each
    non-empty shell ``[n_shell]`` and the mean S in it ``[..., n_shell]``.
    """
    q = q_norms(lattice, Sq.device).reshape(-1)
    dq = q[q > 1e-12].min()
    k = torch.round(q / dq).long()
    keep = k >= 1
    shells, inverse = torch.unique(k[keep], return_inverse=True)
    flat = Sq.reshape(*Sq.shape[:-2], -1)[..., keep].to(torch.float64)
    count = q.new_zeros(len(shells)).index_add_(0, inverse, torch.ones_like(q[keep]))
    total = flat.new_zeros(*flat.shape[:-1], len(shells)).index_add_(-1, inverse, flat)
    qbar = q.new_zeros(len(shells)).index_add_(0, inverse, q[keep]) / count
    return qbar, total / count


def wall_anisotropy(Sq: torch.Tensor, lattice: Lattice, q_min: float, q_max: float) -> torch.Tensor:
    """Ratio of the mean S(q) near the normals of the lattice directions to the mean S(q) near them.

    Straight domain walls along a lattice direction (a1, a2, a2 - a1) scatter along its normal, the
    M directions 30° + k·60° of q. With φ the angle of the shortest q, the ratio is the mean of S over
    the q with |φ - (30° + k·60°)| < 15° divided by the mean over the rest (within 15° of the lattice
    directions k·60°), both for q_min <= |q| <= q_max; 1 for isotropic patterns. ``[...]``.
    """
    if lattice.kind != "triangular":
        raise ValueError(f"wall_anisotropy is defined for the triangular lattice, got {lattice.kind!r}")
    q = torch.from_numpy(_shortest_q(lattice)).reshape(-1, 2).to(Sq.device)
    norm = q.norm(dim=-1)
    band = (norm >= q_min) & (norm <= q_max) & (norm > 1e-12)
    phi = torch.rad2deg(torch.atan2(q[:, 1], q[:, 0])) % 60.0
    near_m = band & ((phi - 30.0).abs() < 15.0)
    near_a = band & ~near_m
    if not (near_m.any() and near_a.any()):
        raise ValueError(f"no q with {q_min} <= |q| <= {q_max} in both sets of directions; widen the band")
    flat = Sq.reshape(*Sq.shape[:-2], -1).to(torch.float64)
    return flat[..., near_m].mean(-1) / flat[..., near_a].mean(-1)


def mean_and_error(x, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over independent samples along ``dim`` and its standard error s/√n (s with n - 1)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    n = x.shape[dim]
    if n < 2:
        raise ValueError(f"mean_and_error needs at least 2 independent samples along dim {dim}, got {n}")
    return x.mean(dim), x.std(dim, correction=1) / math.sqrt(n)


def fm_clusters(spins: torch.Tensor, lattice: Lattice, threshold: float = 0.0) -> np.ndarray:
    """Label ferromagnetic clusters: sites joined by bonds with S_i·S_j > ``threshold``.

    Connected components of the graph of FM bonds (periodic boundaries come with the lattice's
    bond list). Returns ``[N]`` integer labels; sites without an FM bond get -1. One configuration.
    """
    if spins.dim() != 2:
        raise ValueError("fm_clusters takes one configuration [N, 3]")
    if not -1.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [-1, 1), got {threshold}")
    bonds = lattice.table("bonds", spins.device)
    dot = (spins[bonds[:, 0]] * spins[bonds[:, 1]]).sum(-1).cpu().numpy()
    b = lattice.bonds.numpy()
    fm = b[dot > threshold]
    N = lattice.n_sites
    g = coo_matrix((np.ones(len(fm)), (fm[:, 0], fm[:, 1])), shape=(N, N))
    _, labels = connected_components(g, directed=False)
    in_cluster = np.zeros(N, bool)
    in_cluster[fm.ravel()] = True
    labels = np.where(in_cluster, labels, -1)
    _, labels[in_cluster] = np.unique(labels[in_cluster], return_inverse=True)
    return labels


def cluster_length(labels: np.ndarray, weighted: bool = False) -> float:
    """Characteristic length √⟨A⟩ from cluster areas (number of sites).

    ``weighted=False``: number average over clusters; ``True``: area-weighted average
    Σ A² / Σ A (the size of the cluster a random FM site belongs to). 0 if there is none.
    """
    areas = np.bincount(labels[labels >= 0]).astype(float)
    if areas.size == 0:
        return 0.0
    mean = (areas**2).sum() / areas.sum() if weighted else areas.mean()
    return float(np.sqrt(mean))


def _numpy(x) -> np.ndarray:
    """A float64 NumPy copy of a tensor on any device, a list or an array."""
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, float)


def growth_exponent(t, L, t_min=None, t_max=None) -> tuple[float, float]:
    """Least-squares fit log L = c + n log t on t_min <= t <= t_max: returns (n, standard error of n)."""
    t, L = _numpy(t), _numpy(L)
    sel = (t > 0) & (L > 0)
    if t_min is not None:
        sel &= t >= t_min
    if t_max is not None:
        sel &= t <= t_max
    if sel.sum() < 3:
        raise ValueError(f"need at least 3 points with t in [{t_min}, {t_max}] and L > 0, got {int(sel.sum())}")
    x, y = np.log(t[sel]), np.log(L[sel])
    A = np.stack([np.ones_like(x), x], 1)
    coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
    dof = len(x) - 2
    sigma2 = float(((y - A @ coef) ** 2).sum() / dof) if dof > 0 else 0.0
    cov = sigma2 * np.linalg.inv(A.T @ A)
    return float(coef[1]), float(np.sqrt(cov[1, 1]))


def sample_exponents(t, L_samples, t_min=None, t_max=None) -> np.ndarray:
    """The growth exponent of each sample's own L(t) on one window: ``growth_exponent`` of every row
    of ``L_samples`` ``[S, n_t]`` (independent quenches on the times ``t`` ``[n_t]``); ``[S]``, nan
    for a sample with fewer than three points of L > 0 in the window. Their spread across the
    samples (``mean_and_error``) is the statistical error of an exponent that one fit of the
    sample mean does not give."""
    t, L_samples = _numpy(t).astype(float), _numpy(L_samples).astype(float)
    if L_samples.ndim != 2 or t.ndim != 1 or L_samples.shape[1] != t.shape[0]:
        raise ValueError(f"L_samples must be [samples, len(t)], got shape {L_samples.shape} for {t.shape[0]} times")
    out = np.full(len(L_samples), np.nan)
    for k, row in enumerate(L_samples):
        try:
            out[k] = growth_exponent(t, row, t_min, t_max)[0]
        except ValueError:
            pass
    return out


def onset_time(t, L, level: float = 1.0) -> float:
    """The first time at which L(t) reaches ``level`` (linear interpolation between the stored times
    ``t``; the first time if L starts there); NaN if it never does. With ``level`` = 1 lattice
    constant it is when domains begin to exist (uncorrelated spins have L ≈ 1/2)."""
    t, L = _numpy(t).astype(float), _numpy(L).astype(float)
    if t.shape != L.shape or t.ndim != 1:
        raise ValueError(f"t and L must be 1-d of the same length, got shapes {t.shape} and {L.shape}")
    k = np.flatnonzero(L >= level)
    if len(k) == 0:
        return math.nan
    k = int(k[0])
    if k == 0:
        return float(t[0])
    return float(t[k - 1] + (level - L[k - 1]) / (L[k] - L[k - 1]) * (t[k] - t[k - 1]))


def largest_deviation(t, L, L_ref, t_min: float) -> float:
    """max |L / L_ref − 1| over the stored times t >= ``t_min``: how far one length curve strays from a
    reference once domains exist; NaN if no time reaches ``t_min``."""
    t, L, L_ref = (_numpy(x).astype(float) for x in (t, L, L_ref))
    if not t.shape == L.shape == L_ref.shape or t.ndim != 1:
        raise ValueError(f"t, L and L_ref must be 1-d of one length, got shapes {t.shape}, {L.shape}, {L_ref.shape}")
    late = t >= t_min
    return float(np.abs(L[late] / L_ref[late] - 1).max()) if late.any() else math.nan


class FitWindow(NamedTuple):
    """What a window of L(t) offers a growth-law fit (``fit_window``)."""

    ok: bool        #: every rule holds
    points: int     #: points with t_min <= t <= t_max, t > 0 and finite L > 0
    growth: float   #: max L / min L over them (0 without points)
    span: float     #: last t / first t over them (0 without points)


def fit_window(t, L, t_min, t_max=None, *, min_points: int = 5, min_growth: float = 1.0,
               min_span: float = 1.0, min_length: float = 0.0) -> FitWindow:
    """Whether L(t) on ``t_min <= t <= t_max`` can give a growth exponent worth quoting.

    A power-law fit says nothing with too few points, over too short a range, or before domains
    exist; the chapters fix their rule before looking at the data and state it. The window passes
    when it has at least ``min_points`` points, L grows by at least a factor ``min_growth`` over
    them, the times span at least a factor ``min_span``, and the smallest L is at least
    ``min_length`` (uncorrelated spins have L of order half a lattice constant).
    """
    for name, value, low in (("min_points", min_points, 2), ("min_growth", min_growth, 1.0),
                             ("min_span", min_span, 1.0), ("min_length", min_length, 0.0)):
        if not value >= low:
            raise ValueError(f"{name} must be >= {low}, got {value!r}")
    t, L = _numpy(t).astype(float), _numpy(L).astype(float)
    if t.shape != L.shape or t.ndim != 1:
        raise ValueError(f"t and L must be 1-d of the same length, got shapes {t.shape} and {L.shape}")
    sel = (t >= t_min) & (t > 0) & np.isfinite(L) & (L > 0)
    if t_max is not None:
        sel &= t <= t_max
    if not sel.any():
        return FitWindow(False, 0, 0.0, 0.0)
    growth, span = float(L[sel].max() / L[sel].min()), float(t[sel].max() / t[sel].min())
    ok = sel.sum() >= min_points and growth >= min_growth and span >= min_span and L[sel].min() >= min_length
    return FitWindow(bool(ok), int(sel.sum()), growth, span)
