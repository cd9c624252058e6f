"""Exact diagonalisation of the s-d model: energies, local fields, densities, DOS.

For each spin configuration the 2N × 2N Hamiltonian is diagonalised (batched
``torch.linalg.eigh``, on the spins' device), ``H ψ_n = ε_n ψ_n``. The solver is grand canonical
(``sdlib.ensemble``): at chemical potential μ and electron temperature kT, with f_n = f(ε_n - μ),

* kT = 0:  f_n = θ(μ - ε_n),              Ω = Σ_n f_n (ε_n - μ)
* kT > 0:  f_n = 1 / (e^{(ε_n-μ)/kT} + 1), Ω = -kT Σ_n ln(1 + e^{-(ε_n-μ)/kT}),   N = Σ_n f_n

and a model at fixed filling goes through the one canonical wrapper ``ensemble.FixedFilling``
(μ* from N(μ*) = N_e, F = Ω(μ*) + μ* N_e; at kT = 0 the lowest N_e levels, E = Σ_{n<N_e} ε_n, a
degenerate shell at the Fermi level filled uniformly, μ* mid-gap). Local exchange field
(Hellmann–Feynman, no differentiation through ``eigh``):

    H_i = -∂Ω/∂S_i = J Σ_n f_n ψ_n(i)† σ ψ_n(i)

which is also -dF/dS at fixed N_e (the Legendre identity ∂Ω/∂μ = -N_e at μ*).
"""
from __future__ import annotations

import math

import torch

from ..ensemble import FixedFilling, check_mu, solve_mu as _solve_state
from ..forcefield import ForceFieldOutput
from ..model import SDModel, check_spins

__all__ = ["ExactSolver", "Levels", "fermi", "fill", "solve_mu", "occupations"]


def fermi(eps: torch.Tensor, mu, kT: float) -> torch.Tensor:
    """Fermi function; a step θ(μ - ε) at kT = 0 (f = 1/2 exactly at ε = μ)."""
    if kT == 0:
        return (eps < mu).to(eps.dtype) + 0.5 * (eps == mu).to(eps.dtype)
    return torch.sigmoid((mu - eps) / kT)


DEGENERATE = 1e-9  # levels closer than this (energy units) count as one shell at kT = 0


def fill(eps: torch.Tensor, n_electrons: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Occupations ``[..., M]`` and μ ``[...]`` of N_e electrons at kT = 0 in sorted levels ``[..., M]``.

    The lowest N_e levels are filled; if the N_e-th and the next level are degenerate (within
    ``DEGENERATE``) the whole shell gets the same fractional occupation (the kT → 0 limit of the
    canonical ensemble, independent of the eigenbasis ``eigh`` picks), and μ is that level;
    otherwise μ is mid-gap.
    """
    ne = int(n_electrons)
    top, nxt = eps[..., ne - 1], eps[..., ne]
    shell = (eps - top[..., None]).abs() <= DEGENERATE
    below = eps < top[..., None] - DEGENERATE
    n_below = below.sum(-1, keepdim=True).to(eps.dtype)
    f = below.to(eps.dtype) + shell.to(eps.dtype) * (ne - n_below) / shell.sum(-1, keepdim=True).to(eps.dtype)
    degenerate = nxt - top <= DEGENERATE
    return f, torch.where(degenerate, top, 0.5 * (top + nxt))


def solve_mu(eps: torch.Tensor, n_electrons: int, kT: float) -> torch.Tensor:
    """μ ``[...]`` with Σ_n f(ε_n - μ) = N_e at kT > 0 for levels ``[..., M]`` (``ensemble.find_mu``)."""
    return Levels(eps, kT=kT).canonical_mu(n_electrons)


def occupations(eps: torch.Tensor, *, mu=None, n_electrons=None, kT: float = 0.0):
    """Occupations ``f_n``, chemical potential ``[...]`` and energy ``[...]`` of sorted levels ``[..., M]``.

    Exactly one of ``mu`` (grand potential Ω) or ``n_electrons`` (E at kT = 0, free energy
    F = Ω(μ*) + μ* N_e at kT > 0, through ``ensemble.canonical``) is given.
    """
    lv = Levels(eps, kT=kT)
    if n_electrons is None:
        mu = torch.full(eps.shape[:-1], float(mu), dtype=eps.dtype, device=eps.device)
        f = lv.occupations(mu)
        return f, mu, lv.omega(mu, f)
    f, mu = lv.canonical_occupations(int(n_electrons))
    return f, mu, lv.omega(mu, f) + mu * int(n_electrons)


class Levels:
    """Grand-canonical state of single-particle levels ``eps`` ``[..., M]`` (sorted) at temperature kT.

    With eigenvectors ``vecs`` ``[..., M, M]`` and the coupling ``J`` it also gives the fields; this
    is what ``ExactSolver.grand_state`` returns (the protocol of ``sdlib.ensemble``: ``bracket``,
    ``number(mu)``, ``at(mu)``, and ``fill(n_electrons)`` for kT = 0).
    """

    def __init__(self, eps: torch.Tensor, vecs: torch.Tensor | None = None, kT: float = 0.0, J: float = 0.0,
                 dtype: torch.dtype = torch.float64):
        self.eps, self.vecs, self.kT, self.J, self.dtype = eps, vecs, float(kT), float(J), dtype

    @property
    def bracket(self) -> tuple[torch.Tensor, torch.Tensor]:
        pad = 40 * self.kT + 1.0  # N(lo) = 0 and N(hi) = M to within e^{-40}
        return self.eps.min(-1).values - pad, self.eps.max(-1).values + pad

    def occupations(self, mu: torch.Tensor) -> torch.Tensor:
        return fermi(self.eps, torch.as_tensor(mu, dtype=self.eps.dtype, device=self.eps.device)[..., None], self.kT)

    def number(self, mu: torch.Tensor) -> torch.Tensor:
        return self.occupations(mu).sum(-1)

    def omega(self, mu: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Ω at μ (``f`` the occupations, used at kT = 0 where Ω = Σ f (ε - μ))."""
        mu = torch.as_tensor(mu, dtype=self.eps.dtype, device=self.eps.device)[..., None]
        if self.kT == 0:
            return (f * (self.eps - mu)).sum(-1)
        return -self.kT * torch.nn.functional.softplus((mu - self.eps) / self.kT).sum(-1)

    def result(self, f: torch.Tensor, mu: torch.Tensor) -> ForceFieldOutput:
        """Ω, fields (if eigenvectors are known), N and μ for occupations ``f`` at ``mu``."""
        fields = None
        if self.vecs is not None:
            fields = (self.J * ExactSolver.moments(ExactSolver.local_blocks(self.vecs, f))[0]).to(self.dtype)
        mu = torch.as_tensor(mu, dtype=torch.float64, device=self.eps.device).expand(self.eps.shape[:-1])
        return ForceFieldOutput(self.omega(mu, f).to(self.dtype), fields, f.sum(-1).to(self.dtype), mu)

    def at(self, mu) -> ForceFieldOutput:
        return self.result(self.occupations(mu), mu)

    def fill(self, n_electrons: int) -> ForceFieldOutput:
        """kT = 0 at fixed N_e (module function :func:`fill`)."""
        return self.result(*fill(self.eps, n_electrons))

    def canonical_occupations(self, n_electrons: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f, μ*)`` at fixed N_e: :func:`fill` at kT = 0, else f at the root of N(μ*) = N_e."""
        if self.kT == 0:
            return fill(self.eps, n_electrons)
        mu = self.canonical_mu(n_electrons)
        return self.occupations(mu), mu

    def canonical_mu(self, n_electrons: int) -> torch.Tensor:
        if self.kT == 0:
            return fill(self.eps, n_electrons)[1]
        return _solve_state(self, n_electrons)


class ExactSolver:
    """Exact-diagonalisation force field (``ForceField`` interface).

    ``out = ExactSolver(model)(spins)`` with spins ``[N, 3]`` or ``[B, N, 3]`` (float64 by
    default; other floating dtypes are promoted to float64 for the solve and the results cast back).
    ``check_norm=False`` accepts non-unit spins (the Hamiltonian is linear in S), e.g. for Cartesian
    finite differences.
    """

    def __init__(self, model: SDModel, check_norm: bool = True):
        if not isinstance(model, SDModel):
            raise ValueError(f"model must be an SDModel, got {type(model).__name__}")
        self.model = model
        self.check_norm = check_norm

    # ------------------------------------------------------------------ core
    def eigh(self, spins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenvalues ``[..., 2N]`` and eigenvectors ``[..., 2N, 2N]`` (columns)."""
        spins = check_spins(spins, self.model.n_sites, check_norm=self.check_norm)
        return torch.linalg.eigh(self.model.hamiltonian(spins))

    def occupations(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Occupations ``f_n``, the chemical potential and the energy (Ω, E or F) from the levels."""
        m = self.model
        return occupations(eps, mu=m.mu, n_electrons=m.n_electrons, kT=m.kT)

    @property
    def n_sites(self) -> int:
        return self.model.n_sites

    def grand_state(self, spins: torch.Tensor, kT: float | None = None) -> Levels:
        """The eigenpairs of ``spins`` as a grand-canonical state (``sdlib.ensemble``) at the model's
        electron temperature (or ``kT``): ``.at(mu)``, ``.number(mu)``, ``.fill(n_electrons)``."""
        kT = self.model.kT if kT is None else kT
        if not (isinstance(kT, (int, float)) and math.isfinite(kT) and kT >= 0):
            raise ValueError(f"kT must be a finite number >= 0 (electron temperature), got {kT!r}")
        eps, vecs = self.eigh(spins)
        dtype = spins.dtype if isinstance(spins, torch.Tensor) and spins.is_floating_point() else torch.float64
        return Levels(eps, vecs, kT, self.model.J, dtype)

    def grand(self, spins: torch.Tensor, mu) -> ForceFieldOutput:
        """Grand-canonical Ω, fields, N at chemical potential ``mu`` (a number or one per configuration),
        whatever the model's own ensemble."""
        return self.grand_state(spins).at(check_mu(mu))

    @staticmethod
    def local_blocks(vecs: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Diagonal blocks ``G_i[s, s'] = Σ_n f_n conj(ψ_n(i,s)) ψ_n(i,s')``, shape ``[..., N, 2, 2]``.

        Only levels with f_n > 0 contribute; with a common set of empty top levels (kT = 0) they
        are dropped before the contraction, which is a batched product of N (2 × n_occ) matrices.
        """
        *batch, dim, _ = vecs.shape
        occupied = (f > 0).reshape(-1, f.shape[-1]).any(0).nonzero()
        n_occ = int(occupied.max()) + 1 if occupied.numel() else 0
        psi = vecs[..., :n_occ].reshape(*batch, dim // 2, 2, n_occ)  # [..., i, s, n]
        w = psi * f[..., None, None, :n_occ].sqrt().to(vecs.dtype)
        return w.conj() @ w.transpose(-1, -2)

    @staticmethod
    def moments(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Electron spin ⟨c†_i σ c_i⟩ ``[..., N, 3]`` and density ⟨n_i⟩ ``[..., N]`` from blocks G."""
        g_ud = G[..., 0, 1]
        mx = 2 * g_ud.real
        my = 2 * g_ud.imag
        mz = (G[..., 0, 0] - G[..., 1, 1]).real
        n = (G[..., 0, 0] + G[..., 1, 1]).real
        return torch.stack([mx, my, mz], -1), n

    # ------------------------------------------------------------------ public
    def __call__(self, spins: torch.Tensor) -> ForceFieldOutput:
        m = self.model
        if m.canonical:
            return FixedFilling(self, m.n_electrons)(spins)
        return self.grand(spins, m.mu)

    def grand_labels(self, spins: torch.Tensor, mus, kT: float) -> dict:
        """Grand-canonical Ω, fields and electron number at several chemical potentials from one ``eigh``.

        ``mus`` ``[K]``, ``kT`` > 0: returns ``{"mu": [K], "energy": [..., K], "fields": [..., K, N, 3],
        "number": [..., K]}`` with Ω(μ_k) = -kT Σ_n ln(1 + e^{-(ε_n-μ_k)/kT}), H_i(μ_k) as in the
        module docstring and N(μ_k) = Σ_n f(ε_n - μ_k) = -∂Ω/∂μ. The model's own μ or filling is not used.
        """
        if not (isinstance(kT, (int, float)) and kT > 0):
            raise ValueError(f"kT must be > 0 for grand-canonical labels (smooth in mu), got {kT!r}")
        mus = torch.as_tensor(mus, dtype=torch.float64).reshape(-1)
        if mus.numel() == 0 or not torch.isfinite(mus).all():
            raise ValueError(f"mus must be a non-empty sequence of finite chemical potentials, got {mus.tolist()}")
        state = self.grand_state(spins, kT)
        outs = [state.at(mu) for mu in mus.tolist()]
        dim = state.eps.dim() - 1  # the μ axis goes after the batch axes
        return {"mu": mus} | {k: torch.stack([getattr(o, k) for o in outs], dim) for k in ("energy", "fields", "number")}

    def densities(self, spins: torch.Tensor) -> torch.Tensor:
        """Electron density ⟨n_i⟩ per site ``[..., N]`` (0 to 2) in the model's ensemble."""
        state, m = self.grand_state(spins), self.model
        f = state.canonical_occupations(m.n_electrons)[0] if m.canonical else state.occupations(
            torch.tensor(m.mu, dtype=state.eps.dtype))
        return self.moments(self.local_blocks(state.vecs, f))[1]

    def chemical_potential(self, spins: torch.Tensor) -> torch.Tensor:
        """μ: the given one, or the solved one at fixed filling (mid-gap at kT = 0)."""
        m = self.model
        if not m.canonical:
            return torch.full(spins.shape[:-2], m.mu, dtype=torch.float64, device=spins.device)
        return Levels(torch.linalg.eigvalsh(m.hamiltonian(check_spins(spins, m.n_sites, check_norm=self.check_norm))),
                      kT=m.kT).canonical_mu(m.n_electrons)

    def dos(self, spins: torch.Tensor, energies: torch.Tensor, broadening: float = 0.05) -> torch.Tensor:
        """Density of states per site and spin orbital, Gaussian-broadened (integrates to 1).

        Returns ``[..., n_energies]`` for ``energies`` ``[n_energies]``.
        """
        if not broadening > 0:
            raise ValueError(f"broadening must be > 0, got {broadening}")
        spins = check_spins(spins, self.model.n_sites, check_norm=self.check_norm)
        eps = torch.linalg.eigvalsh(self.model.hamiltonian(spins))
        energies = torch.as_tensor(energies, dtype=eps.dtype, device=eps.device)
        x = (energies[:, None] - eps[..., None, :]) / broadening
        return torch.exp(-0.5 * x**2).sum(-1) / (eps.shape[-1] * broadening * math.sqrt(2 * math.pi))
