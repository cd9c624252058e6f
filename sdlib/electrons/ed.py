"""Exact diagonalisation of the s-d model: energies, local fields, densities, DOS.

For each spin configuration the 2N × 2N Hamiltonian is diagonalised (batched
``torch.linalg.eigh``, on the spins' device), ``H ψ_n = ε_n ψ_n``. With occupations f_n:

* fixed μ, kT = 0:  f_n = θ(μ - ε_n),              Ω = Σ_n f_n (ε_n - μ)
* fixed μ, kT > 0:  f_n = 1 / (e^{(ε_n-μ)/kT} + 1), Ω = -kT Σ_n ln(1 + e^{-(ε_n-μ)/kT})
* fixed N_e, kT = 0: the lowest N_e levels,         E = Σ_{n<N_e} ε_n
* fixed N_e, kT > 0: μ solved from Σ f_n = N_e,    F = Ω(μ) + μ N_e (free energy)

Local exchange field (Hellmann–Feynman, no differentiation through ``eigh``):

    H_i = -∂E/∂S_i = J Σ_n f_n ψ_n(i)† σ ψ_n(i)

At fixed N_e and kT > 0, ∂F/∂S at fixed N equals ∂Ω/∂S at the solved μ, so the same formula holds.
At kT = 0 and fixed N_e a degenerate level at the Fermi energy makes the fields ill-defined; the
solver then fills degenerate levels in the order ``eigh`` returns them.
"""
from __future__ import annotations

import math

import torch

from ..forcefield import ForceFieldOutput
from ..model import SDModel, check_spins

__all__ = ["ExactSolver", "fermi", "solve_mu", "occupations"]


def fermi(eps: torch.Tensor, mu, kT: float) -> torch.Tensor:
    """Fermi function; a step θ(μ - ε) at kT = 0 (f = 1/2 exactly at ε = μ)."""
    if kT == 0:
        return (eps < mu).to(eps.dtype) + 0.5 * (eps == mu).to(eps.dtype)
    return torch.sigmoid((mu - eps) / kT)


def solve_mu(eps: torch.Tensor, n_electrons: int, kT: float, tol: float = 1e-13, max_iter: int = 200) -> torch.Tensor:
    """Chemical potential ``[...]`` with Σ_n f(ε_n) = N_e at temperature kT > 0 (bisection).

    ``eps`` is ``[..., M]``; the bracket is [min ε - 40 kT, max ε + 40 kT]. Bisection converges
    unconditionally; it stops when the bracket is narrower than ``tol`` (in energy units).
    """
    lo = eps.min(-1).values - 40 * kT
    hi = eps.max(-1).values + 40 * kT
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        n = torch.sigmoid((mid[..., None] - eps) / kT).sum(-1)
        too_many = n > n_electrons
        hi = torch.where(too_many, mid, hi)
        lo = torch.where(too_many, lo, mid)
        if (hi - lo).max() < tol:
            break
    return 0.5 * (lo + hi)


def occupations(eps: torch.Tensor, *, mu=None, n_electrons=None, kT: float = 0.0):
    """Occupations ``f_n``, chemical potential ``[...]`` and energy ``[...]`` of sorted levels ``[..., M]``.

    Exactly one of ``mu`` (grand potential Ω) or ``n_electrons`` (E at kT = 0, free energy
    F = Ω(μ) + μ N_e at kT > 0 with μ solved) is given; the module docstring has the formulas.
    """
    if n_electrons is None:
        mu = torch.full(eps.shape[:-1], float(mu), dtype=eps.dtype, device=eps.device)
        f = fermi(eps, mu[..., None], kT)
        if kT == 0:
            return f, mu, (f * (eps - mu[..., None])).sum(-1)
        return f, mu, -kT * torch.nn.functional.softplus((mu[..., None] - eps) / kT).sum(-1)
    ne = int(n_electrons)
    if kT == 0:
        f = torch.zeros_like(eps)
        f[..., :ne] = 1.0  # levels sorted ascending
        return f, 0.5 * (eps[..., ne - 1] + eps[..., ne]), eps[..., :ne].sum(-1)
    mu = solve_mu(eps, ne, kT)
    omega = -kT * torch.nn.functional.softplus((mu[..., None] - eps) / kT).sum(-1)
    return fermi(eps, mu[..., None], kT), mu, omega + mu * ne


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
        eps, vecs = self.eigh(spins)
        f, _, energy = self.occupations(eps)
        m, _ = self.moments(self.local_blocks(vecs, f))
        dtype = spins.dtype if spins.is_floating_point() else torch.float64
        return ForceFieldOutput(energy.to(dtype), (self.model.J * m).to(dtype))

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
        eps, vecs = self.eigh(spins)
        out = {"mu": mus, "energy": [], "fields": [], "number": []}
        for mu in mus.tolist():
            f, _, omega = occupations(eps, mu=mu, kT=kT)
            out["energy"].append(omega)
            out["fields"].append(self.model.J * self.moments(self.local_blocks(vecs, f))[0])
            out["number"].append(f.sum(-1))
        dim = eps.dim() - 1  # the μ axis goes after the batch axes
        return {k: (torch.stack(v, dim) if k != "mu" else v) for k, v in out.items()}

    def densities(self, spins: torch.Tensor) -> torch.Tensor:
        """Electron density ⟨n_i⟩ per site ``[..., N]`` (0 to 2)."""
        eps, vecs = self.eigh(spins)
        f, _, _ = self.occupations(eps)
        return self.moments(self.local_blocks(vecs, f))[1]

    def chemical_potential(self, spins: torch.Tensor) -> torch.Tensor:
        """μ: the given one, or the solved one at fixed filling (mid-gap at kT = 0)."""
        eps, _ = self.eigh(spins)
        return self.occupations(eps)[1]

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
