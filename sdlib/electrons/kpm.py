"""Kernel polynomial method (KPM): a linear-scaling force field for the s-d model.

With H̃ = (H - b)/a the Hamiltonian rescaled into (-1, 1), the density matrix ρ = f(H) and the
grand potential Ω = Tr ω(H) are Chebyshev series (``_chebyshev``; g_n = 1, the undamped series, by
default, or the Jackson kernel):

    ρ ≈ Σ_{n<M} g_n c^f_n T_n(H̃),    Ω ≈ Σ_{n<M} g_n c^ω_n μ_n,    μ_n = Tr T_n(H̃)

(Weiße et al., Rev. Mod. Phys. 78, 275 (2006)). T_n(H̃) V is built for a block of R vectors at once
by the recursion α_{n+1} = 2 H̃ α_n - α_{n-1}, each step one sparse product from the lattice stencil
(-t Σ_δ ψ[neighbour δ] by gather, -J S·σ as a 2 × 2 per site). The trace and the diagonal 2 × 2
blocks of ρ are estimated from the same vectors (``_chebyshev.Probing``, ``_chebyshev.RandomPhases``):
probing vectors (Barros & Kato, PRB 88, 235101 (2013); Wang et al., J. Chem. Phys. 148, 094107
(2018)) or spin-resolved random phases. The probing colouring is a periodic tiling: the cosets of
the smallest sublattice commensurate with the L × L torus whose vectors are all longer than the
probing distance (``_chebyshev.probing_sublattice``). The local fields follow as in ``ExactSolver``, H_i = J Tr[σ ρ_ii] = J ⟨c†_i σ c_i⟩.
Cost O(N · M · R): N sites, M moments, R vectors; memory a few blocks of 2N × R complex numbers.

Defaults follow the electron temperature (``KPMSolver``): M from the decay rate of the Fermi
coefficients (the undamped series has then converged; no kernel), and the probing distance from the
range of the density matrix of the clean ferromagnet at that kT. At kT <= 0.1 that range is 50–90
hops for a field error of 1e-4, so on the lattices ED can check the default probing is mostly exact
(every site its own colour) and KPM costs more than ED there; it pays off on larger lattices.

Ensembles (same energy definitions as ``ExactSolver``; KPM needs kT > 0):

* fixed μ: Ω from the moments, fields from ρ, one recursion of M steps.
* fixed filling: the moments μ_n are computed first (M/2 steps, μ_{2n} = 2⟨α_n|α_n⟩ - μ_0 and
  μ_{2n+1} = 2⟨α_{n+1}|α_n⟩ - μ_1); μ* solves N_e = Σ_n g_n c^f_n(μ) μ_n = 2N ∫ f(ε) ρ_KPM(ε) dε
  (``ensemble.FixedFilling``, the one root finder of the library, on the expanded density of states);
  then the fields come from a second recursion (M steps) with the coefficients of f at μ*.
  Energy: the free energy F = Ω(μ*) + μ* N_e.
"""
from __future__ import annotations

import math

import torch

from ..ensemble import FixedFilling, check_mu
from ..forcefield import ForceFieldOutput
from ..model import SDModel, check_spins
from . import _chebyshev as cheb
from ._chebyshev import Probing, RandomPhases, auto_distance
from .ed import ExactSolver

__all__ = ["KPMSolver"]

KT_ERROR = "KPM needs kT > 0 (a Fermi-function broadening); use ExactSolver for kT = 0"
PROBING_TOL = 1e-4  # probing=True: estimated relative field error of probing (``_chebyshev.thermal_distance``)
SERIES_TOL = cheb.SERIES_TOL  # n_moments=None: e^{-ηM} <= SERIES_TOL (``_chebyshev.default_moments``)
AUTO_TOL = 1e-4  # probing="auto": every neglected coupling |ρ_ij| <= AUTO_TOL (``auto_distance``)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class KPMSolver:
    """KPM force field (``ForceField`` interface): ``out = KPMSolver(model)(spins)``.

    Parameters
    ----------
    model : SDModel with kT > 0 (fixed μ or fixed filling).
    n_moments : M >= 2, Chebyshev moments (polynomial degree M - 1), or None (default): the M at which
        the undamped Fermi series has converged, e^{-ηM} <= ``SERIES_TOL`` = 1e-6 with
        η = asinh(πkT/a) the slowest decay rate of its coefficients (poles at μ ± iπkT, a the
        half-width of the spectral interval), rounded up to a multiple of 10
        (``_chebyshev.default_moments``). M ∝ 1/kT: 290 on the triangular lattice with J = 2 at
        kT = 0.1; 450 / 890 on the square lattice with J = 6 at kT = 0.1 / 0.05.
    n_vectors : random vectors per spin component (only with ``probing=False``; 2·n_vectors columns).
    probing : True (default), an integer distance d >= 1, "auto", or False. Probing vectors give
        every site the colour of a coset of a sublattice whose vectors are all longer than d hops;
        2·n_colours columns, deterministic; the estimate of ρ_ii picks up ρ_ij of the colour-mates.

        * True: d from kT (``thermal_distance``, ``_chebyshev.thermal_distance``): the smallest d
          with the estimated relative field error 2z·max_{r > d}||ρ(r)|| / |ρ_0(0) - ρ_1(0)| <=
          ``PROBING_TOL`` = 1e-4 (z the coordination number), ρ(r) the density matrix of the clean
          ferromagnet (ρ_0, ρ_1 its majority and minority spin parts) at the model's μ (fixed
          filling: at the μ where the ferromagnet has that filling) and kT, by one FFT on the L × L
          torus. The ferromagnet has the widest bands and no scattering: its density matrix is the
          longest-ranged of the textures measured (random, smoothed random, tetrahedral, Néel),
          decaying as a power law times e^{-πkT r/v_F}. Where no d shorter than the torus
          qualifies, every site is its own colour (exact probing, N colours, cost O(N²M)).
          Distances and colours on 240 × 240 (the colours depend on L through the commensurate
          sublattice): triangular, J = 2, μ = -1.2: kT = 0.1 → d = 83 (7200 colours; exact probing
          on L <= 96), 0.2 → 46 (1920), 0.5 → 21 (480); square, J = 6, μ = -3: kT = 0.05 → 90
          (5760; exact on L <= 96), 0.1 → 55 (1800), 0.5 → 15 (128). The exact probing error of
          the ferromagnet at these d is 6e-6 – 4e-5; textures checked against ED (random, smoothed
          random, tetrahedral, Néel) stay below the ferromagnet's. The d used is
          ``self.estimator.distance``.
        * an integer d: that distance (d at least the largest hop distance of the torus: exact).
        * "auto": the smallest d with a rigorous bound |ρ_ij| <= ``AUTO_TOL`` on every neglected
          coupling (``auto_distance``, from the Chebyshev coefficients: ρ_ij has no terms of degree
          below the hop distance). Far more conservative than True: d ≈ 160 hops at kT = 0.1 on the
          triangular lattice with J = 2, since it assumes the series spreads one hop per degree.
        * False: spin-resolved random phases, ``n_vectors`` per spin component (error ~ R^{-1/2}).
    seed : seed of the random phases (the same vectors are used in every call).
    bounds : (lo, hi) enclosing the spectrum of every unit-spin configuration, i.e. containing
        [ε_min(hopping) - |J|, ε_max(hopping) + |J|] (Weyl's inequality, attained by the
        ferromagnet); default exactly that interval. A 1 % margin is added in the rescaling.
    kernel : None (default: plain truncated series, g_n = 1) or "jackson". At kT > 0 the Fermi
        function is analytic and its undamped series converges as e^{-ηM}, while the Jackson kernel
        (a positive smoothing of width ~πa/M) leaves an O(1/M²) error. Relative field errors against
        ED, 12 × 12 triangular, J = 2, μ = -1.2, kT = 0.1, exact probing, M = 50 / 100 / 200 / 400 / 800:
        Jackson 2e-2 / 7e-3 / 2e-3 / 6e-4 / 2e-4, None 4e-3 / 4e-4 / 3e-6 / 2e-10 / 2e-15; the
        undamped series was as accurate or better at every M measured (also square, J = 6,
        kT = 0.05, and fixed filling, including μ*). What the kernel buys is positivity: the damped
        f stays within [0, 1] and N(μ) is monotone, while with too few moments (η·M ≲ 10) the
        undamped N(μ) can dip by ~0.1 electron, so a root for N_e need not be unique (1e-7 electron
        at the default M).
    dtype : torch.complex128 (default) or torch.complex64 for the vectors.

    Cost of the defaults: time ∝ N · M · 2·n_colours, memory a few blocks of 2N × 2·n_colours
    complex numbers. One CPU thread (a shared machine), relative field error against ED, random spins:
    12 × 12 triangular, J = 2, μ = -1.2, kT = 0.1: M = 290, exact probing (288 columns), 0.8 s,
    error 4e-8 (ED 0.02 s; at M = 400: 1.1 s, 3e-10; the former default, Jackson kernel and
    d = 6, had 2e-2); 12 × 12 square, J = 6, μ = -3: kT = 0.1, M = 450, 1.3 s, 4e-9; kT = 0.05,
    M = 890, 2.1 s, 3e-9 (fixed filling 0.485: 3.7 s, two recursions); 24 × 24 square, kT = 0.5:
    M = 90, d = 15 (384 columns), 1.2–1.5 s, 1e-8 (random) and 9e-6 (ferromagnet), ED 1.0 s. On
    lattices too large for ED the colours of the table under ``probing`` set the cost.

    Spins ``[N, 3]`` or ``[B, N, 3]`` (unit vectors) on any device; the batch is vectorised.
    """

    def __init__(self, model: SDModel, n_moments: int | None = None, n_vectors=None, probing=True, seed: int = 0,
                 bounds=None, kernel: str | None = None, dtype=torch.complex128):
        if not isinstance(model, SDModel):
            raise ValueError(f"model must be an SDModel, got {type(model).__name__}")
        if not model.kT > 0:
            raise ValueError(KT_ERROR)
        if n_moments is not None and (not _is_int(n_moments) or n_moments < 2):
            raise ValueError(f"n_moments must be None (from kT) or an integer >= 2, got {n_moments!r}")
        if not (kernel is None or (isinstance(kernel, str) and kernel == "jackson")):
            raise ValueError(f"kernel must be None (undamped) or 'jackson', got {kernel!r}")
        if dtype not in (torch.complex128, torch.complex64):
            raise ValueError(f"dtype must be torch.complex128 or torch.complex64, got {dtype!r}")
        if not _is_int(seed):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.model, self.dtype = model, dtype
        self.lo, self.hi = self._check_bounds(bounds)
        self.a, self.b = cheb.rescaling(self.lo, self.hi)
        if n_moments is None:
            n_moments = cheb.default_moments(self.a, model.kT, SERIES_TOL)
        self.n_moments, self.kernel = n_moments, kernel
        self.n_nodes = cheb.n_nodes(n_moments, self.a, model.kT)
        self.estimator = self._make_estimator(probing, n_vectors, seed)

    # ------------------------------------------------------------------ construction
    def _check_bounds(self, bounds) -> tuple[float, float]:
        m = self.model
        t_lo, t_hi = cheb.hopping_band_edges(m.lattice, m.t)
        need = (t_lo - abs(m.J), t_hi + abs(m.J))
        if bounds is None:
            return need
        try:
            lo, hi = (float(x) for x in bounds)
        except (TypeError, ValueError):
            raise ValueError(f"bounds must be a pair (lo, hi) of real numbers, got {bounds!r}") from None
        slack = 1e-12 * (need[1] - need[0])
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= need[0] + slack and hi >= need[1] - slack):
            raise ValueError(
                f"bounds={bounds!r} must enclose the spectrum of every unit-spin configuration, "
                f"[{need[0]:.6g}, {need[1]:.6g}] (hopping band edges ∓ |J|); use bounds=None for that interval"
            )
        return lo, hi

    def _make_estimator(self, probing, n_vectors, seed):
        lat = self.model.lattice
        if probing is False:
            if not _is_int(n_vectors) or n_vectors < 1:
                raise ValueError(f"n_vectors must be an integer >= 1 with probing=False, got {n_vectors!r}")
            return RandomPhases(lat.n_sites, n_vectors, seed)
        if n_vectors is not None:
            raise ValueError("n_vectors applies to random vectors only: pass probing=False with n_vectors=R")
        if probing is True:
            return Probing(lat, self.thermal_distance())
        if isinstance(probing, str) and probing == "auto":
            m = self.model
            mu = torch.tensor(m.mu if m.mu is not None else self.b, dtype=torch.float64)
            return Probing(lat, auto_distance(self._coefficients("f", mu), AUTO_TOL))
        if _is_int(probing) and probing >= 1:
            return Probing(lat, probing)
        raise ValueError(f"probing must be True, False, 'auto' or an integer distance >= 1, got {probing!r}")

    def thermal_distance(self, tol: float = PROBING_TOL) -> int:
        """The probing distance of ``probing=True`` for relative field error ``tol``
        (``_chebyshev.thermal_distance`` at the model's μ, or at the ferromagnet's μ for its filling)."""
        m = self.model
        mu = m.mu if m.mu is not None else cheb.ferromagnet_mu(m.lattice, m.t, m.J, m.filling, m.kT)
        return cheb.thermal_distance(m.lattice, m.t, m.J, mu, m.kT, tol)

    # ------------------------------------------------------------------ Chebyshev recursion
    def _operator(self, spins: torch.Tensor):
        """The map (ψ, ψ_prev, s) ↦ s·H̃ψ - ψ_prev for ψ ``[..., N, 2, R]``, spins ``[..., N, 3]``, s = 1, 2.

        H̃ψ = (-t Σ_δ ψ[neighbour δ] - J (S·σ) ψ - b ψ) / a: the hopping by gathers along the site
        axis, the on-site 2 × 2 block -J (S·σ) - b elementwise, all columns at once.
        """
        a, b, J = self.a, self.b, self.model.J
        nbr = self.model.lattice.neighbors.to(spins.device)
        sx, sy, sz = (spins[..., k][..., None].to(torch.float64) for k in range(3))
        local = [((-J * sz - b) / a), (-J * torch.complex(sx, -sy) / a), ((J * sz - b) / a)]  # ↑↑, ↑↓, ↓↓
        local = {s: [(s * x).to(self.dtype) for x in local] for s in (1, 2)}

        def apply(psi: torch.Tensor, prev: torch.Tensor | None, s: int) -> torch.Tensor:
            out = psi.index_select(-3, nbr[:, 0])
            for d in range(1, nbr.shape[1]):
                out += psi.index_select(-3, nbr[:, d])
            out *= -s * self.model.t / a
            if prev is not None:
                out -= prev
            uu, ud, dd = local[s]
            up, dn = psi[..., 0, :], psi[..., 1, :]
            out[..., 0, :].addcmul_(uu, up).addcmul_(ud, dn)
            out[..., 1, :].addcmul_(ud.conj(), up).addcmul_(dd, dn)
            return out

        return apply

    def _recursion(self, spins: torch.Tensor, coef: torch.Tensor | None):
        """Moments μ_n ``[..., M]`` and, with ``coef`` ``[..., M]``, Y = Σ_n coef_n T_n(H̃) V."""
        est, apply, M = self.estimator, self._operator(spins), self.n_moments
        prev = est.vectors(spins.device, self.dtype).expand(*spins.shape[:-2], -1, -1, -1)
        cur = apply(prev, None, 1)
        mom = [est.trace(prev), est.trace(cur)]
        Y = None
        if coef is not None:
            c = coef.to(self.dtype)[..., None, None, None]
            Y = prev * c[..., 0, :, :, :] + cur * c[..., 1, :, :, :]
        for n in range(2, M):
            prev, cur = cur, apply(cur, prev, 2)
            mom.append(est.trace(cur))
            if Y is not None:
                Y.addcmul_(cur, c[..., n, :, :, :])
        return torch.stack(mom, -1), Y

    def _moments_doubling(self, spins: torch.Tensor) -> torch.Tensor:
        """Moments μ_n ``[..., M]`` from ⌈M/2⌉ steps: μ_{2n} = 2⟨α_n|α_n⟩ - μ_0, μ_{2n+1} = 2⟨α_{n+1}|α_n⟩ - μ_1."""
        est, apply, M = self.estimator, self._operator(spins), self.n_moments
        prev = est.vectors(spins.device, self.dtype).expand(*spins.shape[:-2], -1, -1, -1)
        cur = apply(prev, None, 1)
        m0, m1 = est.dot(prev, prev), est.dot(prev, cur)
        mom = [m0, m1]
        for n in range(1, (M + 1) // 2):
            prev, cur = cur, apply(cur, prev, 2)
            mom += [2 * est.dot(prev, prev) - m0, 2 * est.dot(cur, prev) - m1]
        return torch.stack(mom[:M], -1)

    # ------------------------------------------------------------------ ensembles
    def _coefficients(self, which: str, mu: torch.Tensor) -> torch.Tensor:
        fn = cheb.fermi_coefficients if which == "f" else cheb.omega_coefficients
        return fn(mu, self.model.kT, self.a, self.b, self.n_moments, self.n_nodes, self.kernel == "jackson")

    def number_at_nodes(self, moments: torch.Tensor):
        """``μ ↦ N(μ) = Σ_n g_n c^f_n(μ) μ_n = Σ_k w_k f(ε_k - μ)`` for moments ``[..., M]``: the
        expanded density of states at the quadrature nodes ε_k (``node_weights``), so that each
        evaluation costs O(K), not a recursion."""
        K = self.n_nodes
        damped = moments * cheb.jackson_kernel(self.n_moments, device=moments.device) if self.kernel else moments
        w = cheb.node_weights(damped, K)
        eps = self.a * cheb.nodes(K, device=moments.device) + self.b
        kT = self.model.kT
        return lambda mu: (w * torch.sigmoid((mu[..., None] - eps) / kT)).sum(-1)

    def moments(self, spins: torch.Tensor) -> torch.Tensor:
        """Estimated Chebyshev moments μ_n = Tr T_n(H̃), ``[..., M]`` (μ_0 = 2N); DOS ρ(x) ∝ Σ g_n μ_n T_n(x)."""
        spins = check_spins(spins, self.model.n_sites)
        return self._moments_doubling(spins)

    @property
    def n_sites(self) -> int:
        return self.model.n_sites

    def grand_state(self, spins: torch.Tensor) -> "_KPMState":
        """Grand-canonical state of ``spins`` (``sdlib.ensemble``): ``.at(mu)`` runs one recursion of M
        steps; ``.number(mu)`` uses the moments of ⌈M/2⌉ doubling steps, computed on first use."""
        return _KPMState(self, check_spins(spins, self.model.n_sites))

    def grand(self, spins: torch.Tensor, mu) -> ForceFieldOutput:
        """Ω, fields, N at chemical potential ``mu`` (a number or one per configuration)."""
        return self.grand_state(spins).at(check_mu(mu))

    def __call__(self, spins: torch.Tensor) -> ForceFieldOutput:
        m = self.model
        if m.canonical:
            return FixedFilling(self, m.n_electrons)(spins)
        return self.grand(spins, m.mu)


class _KPMState:
    """The ``sdlib.ensemble`` protocol for ``KPMSolver``: bracket, number(μ), at(μ)."""

    def __init__(self, solver: KPMSolver, spins: torch.Tensor):
        self.solver, self.spins, self.kT = solver, spins, solver.model.kT
        self._number = None

    @property
    def bracket(self) -> tuple[torch.Tensor, torch.Tensor]:
        s, pad = self.solver, 40 * self.kT
        lo = torch.full(self.spins.shape[:-2], s.lo - pad, dtype=torch.float64, device=self.spins.device)
        return lo, torch.full_like(lo, s.hi + pad)

    def number(self, mu: torch.Tensor) -> torch.Tensor:
        if self._number is None:
            self._number = self.solver.number_at_nodes(self.solver._moments_doubling(self.spins))
        return self._number(mu)

    def at(self, mu) -> ForceFieldOutput:
        s, spins = self.solver, self.spins
        mu = torch.as_tensor(mu, dtype=torch.float64, device=spins.device).expand(spins.shape[:-2])
        coef = s._coefficients("f", mu)
        mom, Y = s._recursion(spins, coef)
        omega = (s._coefficients("w", mu) * mom).sum(-1)
        G = s.estimator.blocks(Y).to(torch.complex128)
        G = 0.5 * (G + G.conj().transpose(-1, -2))  # ρ_ii is Hermitian
        fields = s.model.J * ExactSolver.moments(G)[0]
        number = (coef * mom).sum(-1)  # Tr ρ = Σ_n g_n c^f_n μ_n
        return ForceFieldOutput(omega.to(spins.dtype), fields.to(spins.dtype), number.to(spins.dtype), mu)
