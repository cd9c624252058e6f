"""Chebyshev expansions for the kernel polynomial method (Weiße et al., Rev. Mod. Phys. 78, 275 (2006)).

A function g(ε) on the spectrum of H is expanded in the rescaled variable x = (ε - b)/a ∈ (-1, 1):

    g(a x + b) ≈ Σ_{n<M} g_n c_n T_n(x),    c_n = (2 - δ_n0)/π ∫ g(a x + b) T_n(x) / √(1 - x²) dx

with T_n the Chebyshev polynomials of the first kind and g_n the Jackson kernel (Weiße et al.
Eq. (71)), which damps the Gibbs oscillations of the truncated series:

    g_n = [(M - n + 1) cos(πn/(M+1)) + sin(πn/(M+1)) cot(π/(M+1))] / (M + 1)

The integral is done by K-point Chebyshev–Gauss quadrature, x_k = cos θ_k, θ_k = π(k + ½)/K:

    c_n = (2 - δ_n0)/K Σ_k g(x_k) cos(n θ_k),

a type-II discrete cosine transform, computed here by FFT (Makhoul's algorithm) in torch so that
it runs on the device of the data. Aliasing error ~ Σ_j |c_{2jK±n}|; K is chosen from the width
of the Fermi function so that it is negligible (``n_nodes``).

The two functions KPM needs at temperature kT (energies in units of t):

    Fermi function      f(ε) = 1 / (e^{(ε-μ)/kT} + 1)
    grand potential     ω(ε) = -kT ln(1 + e^{-(ε-μ)/kT}),   ω'(ε) = f(ε),  Ω = Tr ω(H)

The coefficients decay as e^{-ηn} (``fermi_decay_rate``), which sets the default number of
moments (``default_moments``); the density matrix f(H)_ij of the clean ferromagnet, by one FFT,
sets the default probing distance (``thermal_distance``).

The second half of the module holds the estimators of traces and diagonal 2 × 2 blocks from a
block of vectors: probing vectors on a periodic colouring of the lattice, and spin-resolved
random phases.
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "jackson_kernel", "n_nodes", "dct2", "expansion", "fermi_coefficients", "omega_coefficients",
    "evaluate", "hopping_band_edges", "rescaling", "node_weights", "nodes",
    "hop_distance", "probing_sublattice", "probing_colors", "Probing", "RandomPhases", "auto_distance",
    "fermi_decay_rate", "default_moments", "torus_hops", "ferromagnet_density_matrix", "ferromagnet_mu",
    "thermal_distance",
]

MARGIN = 0.01  # the spectral interval is mapped into [-(1 - MARGIN), 1 - MARGIN]


def jackson_kernel(M: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """Jackson damping factors g_n, n = 0..M-1 (Weiße et al. Eq. (71)); g_0 = 1."""
    n = torch.arange(M, dtype=dtype, device=device)
    q = math.pi / (M + 1)
    return ((M - n + 1) * torch.cos(q * n) + torch.sin(q * n) / math.tan(q)) / (M + 1)


def n_nodes(M: int, a: float, kT: float) -> int:
    """Number of quadrature nodes K: at least 4M, and ≳ 40 decay lengths of the Fermi coefficients.

    The coefficients of the Fermi function decay as e^{-ηn} with η ≈ π kT / a (the poles at
    ε = μ ± iπkT), so aliasing is below e^{-40} once 2K - M > 40/η. K is a power of two (FFT).
    """
    need = max(4 * M, int(math.ceil(40 * a / (math.pi * kT))) + M)
    return 1 << (need - 1).bit_length()


def nodes(K: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """Chebyshev–Gauss nodes x_k = cos(π(k + ½)/K), k = 0..K-1."""
    k = torch.arange(K, dtype=dtype, device=device)
    return torch.cos(math.pi * (k + 0.5) / K)


def dct2(v: torch.Tensor) -> torch.Tensor:
    """Type-II DCT along the last axis, y_n = 2 Σ_k v_k cos(πn(2k+1)/(2K)), by one complex FFT."""
    K = v.shape[-1]
    w = torch.cat([v[..., ::2], v[..., 1::2].flip(-1)], dim=-1)
    W = torch.fft.fft(w.to(torch.complex128), dim=-1)
    phase = torch.exp(-1j * math.pi * torch.arange(K, device=v.device, dtype=torch.float64) / (2 * K))
    return 2 * (phase * W).real


def expansion(values: torch.Tensor, M: int, kernel: bool = True) -> torch.Tensor:
    """Coefficients g_n c_n ``[..., M]`` of a function sampled at the K Chebyshev–Gauss nodes ``[..., K]``."""
    K = values.shape[-1]
    if M > K:
        raise ValueError(f"n_moments={M} exceeds the number of quadrature nodes K={K}")
    c = dct2(values)[..., :M] / K
    c[..., 0] = c[..., 0] / 2
    if kernel:
        c = c * jackson_kernel(M, device=values.device)
    return c


def node_weights(series: torch.Tensor, K: int) -> torch.Tensor:
    """Weights w_k ``[..., K]`` with Σ_n series_n c_n[g] = Σ_k w_k g(x_k) for every g (c_n by K-point quadrature).

    w_k = (1/K) Σ_n (2 - δ_n0) series_n cos(n θ_k): the expanded density of states at the nodes
    when ``series`` holds the damped moments g_n μ_n. A type-III DCT, by one zero-padded FFT.
    """
    M = series.shape[-1]
    n = torch.arange(M, dtype=torch.float64, device=series.device)
    a = series * torch.where(n == 0, 1.0, 2.0) / K * torch.exp(1j * math.pi * n / (2 * K))
    return (torch.fft.ifft(a, n=2 * K, dim=-1)[..., :K] * (2 * K)).real


def _energies(mu: torch.Tensor, a: float, b: float, K: int) -> torch.Tensor:
    """``[..., K]`` of (ε_k - μ) at the nodes, for μ ``[...]``."""
    x = nodes(K, device=mu.device)
    return a * x + b - mu[..., None]


def fermi_coefficients(mu, kT: float, a: float, b: float, M: int, K: int, kernel: bool = True) -> torch.Tensor:
    """Kernel-damped coefficients ``[..., M]`` of f(ε) = 1/(e^{(ε-μ)/kT} + 1) for μ ``[...]``."""
    mu = torch.as_tensor(mu, dtype=torch.float64)
    return expansion(torch.sigmoid(-_energies(mu, a, b, K) / kT), M, kernel)


def omega_coefficients(mu, kT: float, a: float, b: float, M: int, K: int, kernel: bool = True) -> torch.Tensor:
    """Kernel-damped coefficients ``[..., M]`` of ω(ε) = -kT ln(1 + e^{-(ε-μ)/kT}) for μ ``[...]``."""
    mu = torch.as_tensor(mu, dtype=torch.float64)
    return expansion(-kT * torch.nn.functional.softplus(-_energies(mu, a, b, K) / kT), M, kernel)


def evaluate(coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ_n coef_n T_n(x) for x ∈ [-1, 1] ``[P]`` (T_n(x) = cos(n arccos x)); returns ``[..., P]``."""
    n = torch.arange(coef.shape[-1], dtype=torch.float64, device=coef.device)
    T = torch.cos(n[:, None] * torch.arccos(x.clamp(-1, 1))[None, :])
    return coef @ T


def hopping_band_edges(lattice, t: float) -> tuple[float, float]:
    """Exact lowest and highest eigenvalue of the hopping matrix -t Σ_<ij> on the L × L torus.

    ε(k) = -2t Σ_{δ ∈ half NN} cos(k·δ) with k·δ = 2π(m1 δx + m2 δy)/L over the L² allowed k.
    """
    eps = _band(lattice, t)
    return float(eps.min()), float(eps.max())


def rescaling(lo: float, hi: float) -> tuple[float, float]:
    """Scale a and shift b with H̃ = (H - b)/a mapping [lo, hi] onto [-(1-MARGIN), 1-MARGIN]."""
    return (hi - lo) / (2 * (1 - MARGIN)), (hi + lo) / 2


# ====================================================================== trace and block estimators
# Column layout of a block of vectors ψ ``[..., N, 2, R]``: R = 2·K columns, column s·K + k carries
# spin component s only (s = 0 ↑, 1 ↓); K = number of colours (probing) or of random vectors.
# From Y = g(H̃) V each estimator returns the blocks G_i[s, t] ≈ g(H̃)_{(i,t),(i,s)} (the convention of
# ``ExactSolver.local_blocks``) and the trace Tr g(H̃) ≈ Σ_v v† Y_v / norm.


def hop_distance(kind: str, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Number of nearest-neighbour hops for integer displacements (dx, dy) on the infinite lattice."""
    if kind == "square":
        return dx.abs() + dy.abs()
    return (dx.abs() + dy.abs() + (dx + dy).abs()) // 2  # triangular, NN ±(1,0), ±(0,1), ±(-1,1)


def _divisors(n: int) -> list[int]:
    small = [k for k in range(1, math.isqrt(n) + 1) if n % k == 0]
    return sorted(set(small + [n // k for k in small]))


def probing_sublattice(lattice, distance: int) -> tuple[int, int, int]:
    """Smallest-index sublattice Λ ⊂ Z² commensurate with the L × L torus (L·Z² ⊂ Λ) whose nonzero
    vectors are all more than ``distance`` hops long. Λ is spanned by (A, 0) and (B, C) (Hermite
    normal form, 0 <= B < A); its index A·C is the number of colours. Falls back to Λ = L·Z²
    (every site its own colour, exact) when nothing smaller exists.
    """
    L, p = lattice.L, distance + 1
    r = torch.arange(-(p - 1), p)
    X, Y = (g.reshape(-1) for g in torch.meshgrid(r, r, indexing="ij"))
    short = (hop_distance(lattice.kind, X, Y) < p) & ((X != 0) | (Y != 0))
    X, Y = X[short], Y[short]  # every vector shorter than p lies in this box
    for n in _divisors(L * L)[:-1]:
        for A in _divisors(n):
            C = n // A
            if L % A or L % C:
                continue
            for B in range(A):
                if (B * (L // C)) % A:
                    continue  # (0, L) must lie in Λ
                inside = (Y % C == 0) & ((X - B * torch.div(Y, C, rounding_mode="floor")) % A == 0)
                if not inside.any():
                    return A, B, C
    return L, 0, L


def probing_colors(lattice, distance: int) -> tuple[torch.Tensor, int]:
    """Colour ``[N]`` of every site (the coset of Λ, ``probing_sublattice``) and the number of colours."""
    A, B, C = probing_sublattice(lattice, distance)
    x, y = lattice.coords[:, 0], lattice.coords[:, 1]
    colors = (y % C) * A + (x - B * torch.div(y, C, rounding_mode="floor")) % A
    return colors, A * C


class _Estimator:
    """Common parts: device caches, the inner product ⟨x|y⟩ = Σ_v x_v† y_v / norm."""

    norm = 1.0

    def _cached(self, name: str, device, dtype=None) -> torch.Tensor:
        key = (name, str(device), dtype)
        if key not in self._cache:
            t = getattr(self, name)
            self._cache[key] = t.to(device=device, dtype=dtype or t.dtype)
        return self._cache[key]

    def dot(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = torch.broadcast_tensors(x, y)  # Re Σ conj(x) y = Σ (Re x Re y + Im x Im y)
        return (torch.view_as_real(x) * torch.view_as_real(y)).sum((-1, -2, -3, -4)) / self.norm

    def trace(self, a: torch.Tensor) -> torch.Tensor:
        return self.blocks(a).diagonal(dim1=-2, dim2=-1).real.sum((-1, -2))

    def _spin_diagonal(self, cols: torch.Tensor) -> torch.Tensor:
        """``[N, 2, 2K]`` vectors from column entries ``[N, 2, K]`` (entry of spin s in columns s·K + k)."""
        N, _, K = cols.shape
        V = torch.zeros(N, 2, 2, K, dtype=cols.dtype, device=cols.device)
        V[:, 0, 0], V[:, 1, 1] = cols[:, 0], cols[:, 1]
        return V.reshape(N, 2, 2 * K)


class Probing(_Estimator):
    """Probing vectors: one per colour and spin component, v_{c,s} = Σ_{i of colour c} e_{i,s}.

    v_{c,s}† g v_{c,s} sums g over pairs of sites of one colour, so the estimate of the block at
    site i is exact up to the couplings g_{ij} with j ≠ i of the same colour, all more than
    ``distance`` hops away. Deterministic; 2·n_colours columns.
    """

    def __init__(self, lattice, distance: int):
        self.distance = int(distance)
        self.colors, self.n_colors = probing_colors(lattice, self.distance)
        self._cache = {}

    @property
    def n_columns(self) -> int:
        return 2 * self.n_colors

    def vectors(self, device, dtype) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(self.colors, self.n_colors).to(dtype)  # [N, K]
        return self._spin_diagonal(onehot[:, None, :].expand(-1, 2, -1)).to(device)

    def blocks(self, Y: torch.Tensor) -> torch.Tensor:
        *b, N, _, R = Y.shape
        idx = self._cached("colors", Y.device).view(N, 1, 1, 1).expand(*b, N, 2, 2, 1)
        return Y.reshape(*b, N, 2, 2, R // 2).gather(-1, idx)[..., 0].transpose(-1, -2)


class RandomPhases(_Estimator):
    """Spin-resolved random-phase vectors: K per spin component, v_{k,s}(i, s') = δ_{ss'} e^{iφ_{i,s,k}}.

    E[v v†] = 1 restricted to one spin component, so G_i[s, t] = (1/K) Σ_k Y_{k,s}(i, t) e^{-iφ_{i,s,k}}
    estimates the block without cross-talk between spin components (error ~ K^{-1/2}). The phases
    are drawn once from ``seed`` (on the CPU, so every device sees the same vectors).
    """

    def __init__(self, n_sites: int, n_vectors: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        phi = 2 * math.pi * torch.rand(n_sites, 2, n_vectors, generator=g, dtype=torch.float64)
        self.phases = torch.polar(torch.ones_like(phi), phi)
        self.n_vectors, self.norm, self._cache = n_vectors, float(n_vectors), {}

    @property
    def n_columns(self) -> int:
        return 2 * self.n_vectors

    def vectors(self, device, dtype) -> torch.Tensor:
        return self._spin_diagonal(self._cached("phases", device, dtype))

    def blocks(self, Y: torch.Tensor) -> torch.Tensor:
        *b, N, _, R = Y.shape
        ph = self._cached("phases", Y.device, Y.dtype).conj()
        return torch.einsum("...itsk,isk->...ist", Y.reshape(*b, N, 2, 2, R // 2), ph) / self.norm


def auto_distance(coef: torch.Tensor, tol: float) -> int:
    """Smallest probing distance d >= 1 with Σ_{n>d} |coef_n| <= tol for coefficients ``[M]``.

    ρ_ij = Σ_n coef_n T_n(H̃)_ij vanishes for n below the hop distance r_ij (H̃ couples nearest
    neighbours only) and |T_n(H̃)_ij| <= 1, so every coupling dropped by probing at distance d obeys
    |ρ_ij| <= Σ_{n>d} |coef_n|: a rigorous, configuration-independent (hence conservative) bound.
    """
    tail = coef.abs().flip(-1).cumsum(-1).flip(-1)  # tail[r] = Σ_{n>=r} |coef_n|
    ok = torch.nonzero(tail[2:] <= tol)
    return int(ok[0]) + 1 if ok.numel() else coef.shape[-1]


# ====================================================================== defaults from the electron temperature
SERIES_TOL = 1e-6  # default_moments: e^{-ηM} <= SERIES_TOL


def fermi_decay_rate(a: float, kT: float) -> float:
    """Slowest decay rate η of the Chebyshev coefficients of the Fermi function, |c_n| ~ e^{-ηn}.

    f(ε) has its nearest poles at ε = μ ± iπkT, i.e. at x₀ = x_μ ± iπkT/a in the rescaled variable;
    the coefficients decay as ρ^{-n} with ρ = |x₀ + √(x₀² - 1)| the Bernstein ellipse through x₀.
    ρ is smallest at x_μ = 0 (μ at the centre of the interval), where η = ln ρ = asinh(πkT/a) ≈ πkT/a;
    this bound holds for every μ.
    """
    if not (math.isfinite(a) and a > 0):
        raise ValueError(f"a (the spectral half-width) must be a finite number > 0, got {a!r}")
    if not (math.isfinite(kT) and kT > 0):
        raise ValueError(f"kT must be a finite number > 0, got {kT!r}")
    return math.asinh(math.pi * kT / a)


def default_moments(a: float, kT: float, tol: float = SERIES_TOL) -> int:
    """Number of moments M at which the undamped Fermi series has converged: e^{-ηM} <= ``tol``.

    M = ⌈ln(1/tol)/η⌉ with η = ``fermi_decay_rate(a, kT)``, rounded up to a multiple of 10. The
    truncated series then matches the Fermi function to max_ε |f_M - f| ≈ (0.1–1)·tol (measured for
    kT/a = 0.0025–0.05 and μ across the interval). The relative field error of the undamped series
    against exact diagonalisation (exact probing, random spins) is ≈ 0.04·e^{-ηM} on 12 × 12
    triangular (J = 2, kT = 0.1) and ≈ 0.005·e^{-ηM} on 12 × 12 square (J = 6, kT = 0.05, 0.1), so
    ``tol`` = 1e-6 leaves it below 1e-7. M grows as 1/kT: 290 (triangular, J = 2, kT = 0.1),
    450 / 890 (square, J = 6, kT = 0.1 / 0.05), 90 (square, kT = 0.5).
    """
    if not (math.isfinite(tol) and 0 < tol < 1):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    M = math.ceil(math.log(1 / tol) / fermi_decay_rate(a, kT))
    return max(10, 10 * math.ceil(M / 10))


def torus_hops(lattice) -> torch.Tensor:
    """``[L, L]`` hop count of the shortest image of the displacement (x, y), indexed ``[x, y]``.

    On both lattices the hop metric is at least max(|dx|, |dy|), and every coset has an image with
    both coordinates in (-L, L) and at most L hops, so the images (x - {0, L}, y - {0, L}) suffice.
    """
    L = lattice.L
    c = torch.arange(L)
    x, y = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([hop_distance(lattice.kind, x - sx, y - sy) for sx in (0, L) for sy in (0, L)]).amin(0)


def _band(lattice, t: float) -> torch.Tensor:
    """``[L, L]`` hopping band ε(k) at k = 2π(m1, m2)/L in the reciprocal basis, indexed ``[m1, m2]``."""
    L = lattice.L
    m = torch.arange(L, dtype=torch.float64)
    m1, m2 = torch.meshgrid(m, m, indexing="ij")
    half = lattice.nn_vectors[: lattice.coordination // 2]
    return sum(-2 * t * torch.cos(2 * math.pi * (m1 * dx + m2 * dy) / L) for dx, dy in half)


def ferromagnet_density_matrix(lattice, t: float, J: float, mu: float, kT: float) -> torch.Tensor:
    """``[2, L, L]`` density matrix ρ_s(R) = f(H)_{(0,s),(R,s)} of the ferromagnet (spins along z) at μ, kT.

    The ferromagnet is translation invariant: its bands are ε(k) - |J| (s = 0, majority) and
    ε(k) + |J| (s = 1, minority; for J > 0 and spins along +z these are spin up and down), so
    ρ_s(R) = (1/N) Σ_k f(ε(k) ∓ |J|) e^{ik·R}, one inverse FFT per spin on the L × L torus (periodic
    images included). Indexed ``[s, x, y]`` for R = x·a1 + y·a2; the blocks are spin-diagonal.
    """
    eps = _band(lattice, t)
    occ = torch.stack([torch.sigmoid((mu - (eps + s * abs(J))) / kT) for s in (-1.0, 1.0)])
    return torch.fft.ifft2(occ.to(torch.complex128))  # e^{+ik·R} / N; the sign of R is immaterial for |ρ|


def ferromagnet_mu(lattice, t: float, J: float, filling: float, kT: float) -> float:
    """Chemical potential at which the ferromagnet on the L × L torus has ``filling`` electrons per
    spin orbital at temperature kT (bisection to 1e-12 on its 2N band energies)."""
    if not (isinstance(filling, (int, float)) and 0 < filling < 1):
        raise ValueError(f"filling must be a number in (0, 1), got {filling!r}")
    if not (math.isfinite(kT) and kT > 0):
        raise ValueError(f"kT must be a finite number > 0, got {kT!r}")
    eps = _band(lattice, t).reshape(-1)
    levels = torch.cat([eps - abs(J), eps + abs(J)])
    target = filling * levels.numel()
    lo, hi = float(levels.min()) - 50 * kT, float(levels.max()) + 50 * kT
    while hi - lo > 1e-12:
        mid = 0.5 * (lo + hi)
        if torch.sigmoid((mid - levels) / kT).sum() < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def thermal_distance(lattice, t: float, J: float, mu: float, kT: float, tol: float) -> int:
    """Probing distance at which the estimated relative field error of probing is <= ``tol``.

    Probing at distance d adds to the block ρ_ii the blocks ρ_ij of the colour-mates j of i, all
    more than d hops away. The estimate takes |ρ_ij| from the clean ferromagnet at the same μ and kT
    (``ferromagnet_density_matrix``): its bands are the widest of all unit-spin textures and it has
    no scattering, so its density matrix is the longest-ranged one measured (random, smoothed random,
    tetrahedral and Néel textures decay faster); at kT > 0 it falls as a power law times
    e^{-πkT r/v_F}. With env(r) the largest block norm ||ρ(R)|| over displacements of at least r
    hops, d is the smallest distance with

        2z · env(d + 1) <= tol · |ρ_0(0) - ρ_1(0)|

    (z the coordination number; the right side is the ferromagnet's field / J). The nearest
    colour-mates form a shell of about z sites and the farther ones add about as much again: the
    exact probing error of the ferromagnet (the coherent sum over its colour-mates) was measured at
    most 8.7 · env(d + 1) (triangular, J = 2) and 5.0 · env(d + 1) (square, J = 6) relative to its
    field, for d = 6–78, μ across the band and kT = 0.1, 0.3 on 120 × 120. When no distance
    shorter than the torus qualifies, the largest hop distance of the torus is returned: every site
    is then its own colour (exact probing, N colours). Cost: one FFT on the L × L torus.
    """
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    if not (math.isfinite(kT) and kT > 0):
        raise ValueError(f"kT must be a finite number > 0, got {kT!r}")
    rho = ferromagnet_density_matrix(lattice, t, J, mu, kT)
    norm = rho.abs().pow(2).sum(0).sqrt().reshape(-1)
    scale = float((rho[0, 0, 0] - rho[1, 0, 0]).abs())
    if not scale > 1e-12:  # J = 0 (no field) or an empty/full band: use the occupation instead
        scale = float(norm[0])
    hops = torus_hops(lattice).reshape(-1)
    r_max = int(hops.max())
    per_hop = torch.zeros(r_max + 2, dtype=torch.float64).scatter_reduce(0, hops, norm, "amax")
    env = per_hop.flip(0).cummax(0).values.flip(0)  # env[r] = max ||ρ(R)|| over hops(R) >= r; env[r_max + 1] = 0
    ok = torch.nonzero(2 * lattice.coordination * env[2:] <= tol * scale)  # entry d - 1 tests env[d + 1]
    return min(int(ok[0]) + 1, r_max) if ok.numel() else r_max
