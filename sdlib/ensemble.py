"""Electron ensembles: every solver is grand canonical; one wrapper makes any of them canonical.

Grand canonical (what every solver computes). At chemical potential μ and electron temperature
T_e (k_B = 1), for a spin configuration S:

    Ω(S, μ) = -T_e Σ_n ln(1 + e^{-(ε_n - μ)/T_e})      (T_e = 0: Σ_{ε_n<μ} (ε_n - μ))
    H_i     = -∂Ω/∂S_i = J ⟨c†_i σ c_i⟩,               N(S, μ) = -∂Ω/∂μ = Σ_n f(ε_n)

A solver exposes this through ``solver.grand_state(spins)``: an object that holds the expensive
part of the solve (the eigenpairs; the Chebyshev moments; the network's descriptor features) with

* ``bracket`` — ``(lo, hi)``, each ``[...]`` (one per configuration), with N(lo) ≈ 0 and N(hi) ≈ 2N
  (for a network: its trained range of μ);
* ``number(mu)`` — N(S, μ) ``[...]``, cheap once the state exists;
* ``at(mu)`` — the full result, a :class:`~sdlib.forcefield.ForceFieldOutput` with ``energy`` = Ω,
  ``fields`` = -∂Ω/∂S, ``number`` = N and ``mu`` = μ.

Canonical (fixed electron number N_e): :class:`FixedFilling` solves N(S, μ*) = N_e with the one
root finder :func:`find_mu` and returns the free energy by the Legendre transform

    F(S) = Ω(S, μ*) + μ* N_e,    -dF/dS = -∂Ω/∂S |_{μ*}    (because ∂Ω/∂μ = -N_e at μ*),

so the canonical fields are the grand-canonical fields at μ*. At T_e = 0 N(μ) is a staircase and
has no root in general: a solver that supports T_e = 0 (exact diagonalisation) gives its state a
``fill(n_electrons)`` method — the lowest N_e levels, a degenerate shell at the Fermi level filled
uniformly (the T_e → 0 limit of the canonical ensemble), μ* in the middle of the gap (at the shell
when it is partly filled) — and the wrapper uses it.
"""
from __future__ import annotations

import torch

from .forcefield import ForceFieldOutput

__all__ = ["find_mu", "solve_mu", "canonical", "FixedFilling", "number_roots", "check_n_electrons", "check_mu"]

MAX_ITER = 200
MU_CELL = 2.0 ** -14  # width of the grid cells of find_mu's last stage (energy units; a power of 2)
CELL_TRIES = 3  # secant jumps from a guess's cell before find_mu searches the whole bracket


def check_n_electrons(n_electrons, n_sites: int) -> int:
    """``n_electrons`` as an int, with 0 < N_e < 2N (a ValueError naming it otherwise)."""
    ok = isinstance(n_electrons, int) and not isinstance(n_electrons, bool)
    if not ok and isinstance(n_electrons, float) and n_electrons.is_integer():
        n_electrons, ok = int(n_electrons), True
    if not ok or not 0 < n_electrons < 2 * n_sites:
        raise ValueError(f"n_electrons must be an integer with 0 < n_electrons < 2N = {2 * n_sites} "
                         f"({n_sites} sites, two spin orbitals each), got {n_electrons!r}")
    return n_electrons


def check_mu(mu) -> torch.Tensor:
    """A chemical potential (a number or one per configuration) as a float64 tensor; NaN or ±inf is
    refused with a ValueError naming ``mu``."""
    mu = torch.as_tensor(mu, dtype=torch.float64)
    if not torch.isfinite(mu).all():
        raise ValueError(f"mu must be finite, got {mu.tolist()}")
    return mu


def find_mu(number, target, lo: torch.Tensor, hi: torch.Tensor, tol: float | None = None,
            max_iter: int = MAX_ITER, guess: torch.Tensor | None = None) -> torch.Tensor:
    """μ ``[...]`` with ``number(μ) = target``, for an increasing ``number`` (the one μ solver of sdlib).

    Bracketed Illinois iteration (modified regula falsi: the function value at an end kept twice in
    a row is halved, so both ends move; superlinear on smooth N(μ)); it keeps a bracket, so it
    converges whenever N(lo) ≤ target ≤ N(hi). Batched: ``lo``, ``hi`` are ``[...]`` (one bracket per
    configuration; ``target`` a number or ``[...]``). Stops when |N - target| ≤ ``tol`` (default 64
    ulp of ``target`` in the dtype of N: float32 networks resolve N only to ~1e-5 relative) or the
    bracket has shrunk to rounding. Raises ``ValueError`` when the target lies outside
    [N(lo), N(hi)] for some configuration.

    The last stage always runs inside the cell [k q, (k+1) q] of the fixed grid q = ``MU_CELL`` (cut
    to [lo, hi]) with N(k q) ≤ target ≤ N((k+1) q). That cell depends on ``number`` alone, so the
    result does not depend on how it was found: ``guess`` (e.g. μ* of the previous step of a
    trajectory) only saves work — the search starts at its cell and jumps by the secant through the
    cell's ends, about six evaluations of ``number`` instead of thirteen — and a run that resumes
    without it stays bit-identical. A guess whose cell is not found in ``CELL_TRIES`` jumps falls back
    to the whole bracket.
    """
    if guess is not None:
        cell = _cell(number, target, lo, hi, guess.to(lo).expand_as(lo))
        if cell is not None:
            return _illinois(number, target, *cell, tol, max_iter)
    f_lo, f_hi = number(lo) - target, number(hi) - target
    tol = _default_tol(f_lo, target) if tol is None else tol
    bad = ((f_lo > tol) | (f_hi < -tol)).reshape(-1)
    if bad.any():
        shown = torch.as_tensor(target).reshape(-1)[0].item() if torch.as_tensor(target).numel() == 1 else "asked for"
        n_lo, n_hi = (f_lo + target).reshape(-1), (f_hi + target).reshape(-1)
        where = "; ".join(f"configuration {i}: N(lo) = {n_lo[i].item():.6g}, N(hi) = {n_hi[i].item():.6g}"
                          for i in bad.nonzero().reshape(-1)[:3].tolist())
        raise ValueError(f"the electron number {shown} is outside the range N(μ) spans in the bracket "
                         f"μ in [{lo.min().item():.6g}, {hi.max().item():.6g}] for {int(bad.sum())} of {bad.numel()} "
                         f"configurations ({where})")
    mu = _illinois(number, target, lo, hi, f_lo, f_hi, tol, max_iter, width=MU_CELL)
    cell = _cell(number, target, lo, hi, mu)
    if cell is None:  # N within tol of the target at an end of the bracket, or not monotonic
        return mu
    return _illinois(number, target, *cell, tol, max_iter)


def _default_tol(f: torch.Tensor | torch.dtype, target) -> float:
    dtype = f if isinstance(f, torch.dtype) else f.dtype
    return 64 * torch.finfo(dtype).eps * max(float(torch.as_tensor(target).abs().max()), 1.0)


def _cell(number, target, lo, hi, mu0):
    """``(a, b, N(a) - target, N(b) - target)`` of the grid cells (width ``MU_CELL``, cut to [lo, hi])
    that hold the root, searched from the cells of ``mu0``; None if some is not found in ``CELL_TRIES``."""
    q = MU_CELL
    k_lo, k_hi = torch.floor(lo / q), torch.ceil(hi / q) - 1
    k = torch.minimum(torch.maximum(torch.floor(mu0 / q), k_lo), k_hi)
    for _ in range(CELL_TRIES):
        a, b = torch.maximum(k * q, lo), torch.minimum((k + 1) * q, hi)
        fa, fb = number(a) - target, number(b) - target
        found = (fa <= 0) & (fb >= 0)
        if found.all():
            return a, b, fa, fb
        slope = (fb - fa) / torch.where(b > a, b - a, torch.ones_like(a))
        root = torch.where(slope > 0, a - fa / torch.where(slope > 0, slope, torch.ones_like(slope)), a)
        jump = torch.floor(root / q)
        step = torch.where(fa > 0, k - 1, k + 1)  # at least one cell towards the root
        jump = torch.where(jump == k, step, jump)
        k = torch.where(found, k, torch.minimum(torch.maximum(jump, k_lo), k_hi))
    return None


def _illinois(number, target, lo, hi, f_lo, f_hi, tol, max_iter, width=None):
    """The Illinois loop of :func:`find_mu` on a valid bracket; stops at |f| ≤ tol, or once the
    bracket is narrower than ``width`` (a coarse stage). Returns μ."""
    tol = _default_tol(f_lo, target) if tol is None else tol
    side = torch.zeros_like(lo, dtype=torch.int8)  # which end moved last: -1 lo, +1 hi
    mu = 0.5 * (lo + hi)
    for _ in range(max_iter):
        denom = f_hi - f_lo
        secant = (lo * f_hi - hi * f_lo) / torch.where(denom > 0, denom, torch.ones_like(denom))
        mu = torch.where(denom > 0, secant, 0.5 * (lo + hi)).clamp(torch.minimum(lo, hi), hi)
        f = number(mu) - target
        resolution = 4 * torch.finfo(mu.dtype).eps * torch.maximum(mu.abs(), torch.ones_like(mu))
        if width is not None:
            resolution = torch.maximum(resolution, torch.full_like(mu, width))
        if ((f.abs() <= tol) | ((hi - lo) <= resolution)).all():
            break
        below = f < 0
        lo, f_lo = torch.where(below, mu, lo), torch.where(below, f, f_lo)
        hi, f_hi = torch.where(below, hi, mu), torch.where(below, f_hi, f)
        f_hi = torch.where(below & (side == 1), 0.5 * f_hi, f_hi)  # Illinois: halve the value of
        f_lo = torch.where(~below & (side == -1), 0.5 * f_lo, f_lo)  # an end kept twice in a row
        side = torch.where(below, torch.ones_like(side), -torch.ones_like(side))
    return mu


def solve_mu(state, n_electrons: int, name: str | None = None, guess: torch.Tensor | None = None) -> torch.Tensor:
    """μ* ``[...]`` of a grand-canonical ``state`` (kT > 0) with N(μ*) = N_e, by :func:`find_mu` in the
    state's bracket (starting near ``guess``); ``name`` says what fixed N_e in an error message
    (default ``n_electrons=N_e``). A state whose N(μ) is summed in a wider dtype than its per-site
    values are computed in says so by ``number_dtype`` (e.g. float32 for a float32 network whose
    ``number`` returns float64): the tolerance on N is then 64 ulp of N_e in that dtype."""
    dtype = getattr(state, "number_dtype", None)
    tol = None if dtype is None else _default_tol(dtype, float(n_electrons))
    try:
        return find_mu(state.number, float(n_electrons), *state.bracket, tol=tol, guess=guess)
    except ValueError as e:
        raise ValueError(f"{name or f'n_electrons={n_electrons}'} cannot be reached by this solver: {e}") from None


def canonical(state, n_electrons: int, name: str | None = None, guess: torch.Tensor | None = None) -> ForceFieldOutput:
    """The canonical result of a grand-canonical ``state`` at N_e = ``n_electrons`` (module docstring).

    ``energy`` = F = Ω(μ*) + μ* N_e, ``fields`` = -∂Ω/∂S at μ*, ``number`` = N(μ*), ``mu`` = μ*.
    ``name`` says what fixed N_e in an error message (default ``n_electrons=N_e``); ``guess``: a μ
    near μ* (:func:`find_mu`: saves work, does not change the result).
    """
    fill = getattr(state, "fill", None)
    if fill is not None and getattr(state, "kT", None) == 0:
        out = fill(n_electrons)
    else:
        out = state.at(solve_mu(state, n_electrons, name, guess))
    mu = out.mu.to(out.energy.dtype) if out.mu is not None else out.mu
    return ForceFieldOutput(out.energy + mu * n_electrons, out.fields, out.number, out.mu)


@torch.no_grad()
def number_roots(state, n_electrons: int, mus) -> list[dict]:
    """Every solution of N(S, μ) = N_e on a grid of μ, per configuration of a grand-canonical ``state``.

    For the electrons themselves N(μ) = Σ_n f(ε_n - μ) increases strictly (dN/dμ = Σ_n f(1 - f)/T_e > 0)
    and the root μ* is unique; a network's N(μ) = -Σ_i ∂ε_i/∂μ is increasing only as far as it was
    trained to be, and where it is not the canonical state at N_e is ambiguous: :func:`find_mu`
    returns a root that depends on where its search started. This scans ``mus`` (increasing, ≥ 2
    values) and returns, per configuration (one dict each, in the order of ``state.number``'s
    output flattened), ``roots`` (μ of every sign change of N - N_e, linear between grid points),
    ``rising`` (True where N crosses N_e upwards: a maximum of Ω(μ) + μ N_e), ``free_energy``
    (Ω + μ N_e at each root, by ``state.at``; the canonical free energy is the largest over the
    rising roots — the Legendre–Fenchel transform F(N_e) = max_μ [Ω(μ) + μ N_e], which for an
    increasing N(μ) is the usual F = Ω(μ*) + μ* N_e) and ``largest_drop`` (the largest decrease of
    N over any interval of the grid: 0 for an increasing N(μ)).
    """
    mus = torch.as_tensor(mus, dtype=torch.float64).reshape(-1)
    if mus.numel() < 2 or not (mus[1:] > mus[:-1]).all() or not torch.isfinite(mus).all():
        raise ValueError(f"mus must be an increasing grid of at least 2 finite values, got {mus.numel()} values")
    lo = state.bracket[0]
    f = torch.stack([state.number(torch.full_like(lo, float(m), dtype=torch.float64)).double().reshape(-1)
                     for m in mus]) - float(n_electrons)  # [M, B]
    out = []
    for b in range(f.shape[1]):
        fb = f[:, b]
        change = torch.nonzero((fb[:-1] <= 0) != (fb[1:] <= 0)).reshape(-1)
        roots = [float(mus[i] - fb[i] * (mus[i + 1] - mus[i]) / (fb[i + 1] - fb[i])) for i in change]
        out.append({"roots": roots, "rising": [bool(fb[i + 1] > fb[i]) for i in change], "free_energy": [],
                    "largest_drop": float((fb - fb.flip(0).cummin(0).values.flip(0)).max())})
    for k in range(max((len(r["roots"]) for r in out), default=0)):
        mu_k = torch.tensor([r["roots"][min(k, len(r["roots"]) - 1)] if r["roots"] else float(mus[0]) for r in out],
                            dtype=torch.float64)
        at = state.at(mu_k.reshape(lo.shape).to(lo))
        omega = at.energy.double().reshape(-1)
        for b, r in enumerate(out):
            if k < len(r["roots"]):
                r["free_energy"].append(float(omega[b] + mu_k[b] * n_electrons))
    return out


class FixedFilling:
    """A canonical force field (fixed N_e) made from any grand-canonical solver.

    ``FixedFilling(solver, n_electrons=N_e)`` or ``FixedFilling(solver, filling=f)`` with
    N_e = round(2N f); ``solver`` has ``grand_state(spins, **kwargs)`` (module docstring) and
    ``n_sites``. ``ff(spins, **kwargs)`` → ``ForceFieldOutput`` with the free energy F, the fields at
    μ*, ``number`` = N_e (to the root finder's tolerance) and ``mu`` = μ* (float64, one per
    configuration); keyword arguments go to ``grand_state`` (e.g. ``create_graph`` of a network).
    Each call starts its μ* search at the μ* of the previous call of the same batch shape
    (``find_mu``'s ``guess``; ``reuse_mu=False`` searches the whole bracket every time): along a
    trajectory μ* moves little per step, and the result is the same as without the guess.
    """

    def __init__(self, solver, n_electrons: int | None = None, filling: float | None = None, reuse_mu: bool = True):
        if not callable(getattr(solver, "grand_state", None)):
            raise ValueError(f"solver must be grand canonical (have grand_state(spins)); "
                             f"{type(solver).__name__} has none")
        n_sites = int(solver.n_sites)
        if (n_electrons is None) == (filling is None):
            raise ValueError("give exactly one of n_electrons or filling")
        if filling is not None:
            if not (isinstance(filling, (int, float)) and 0 < filling < 1):
                raise ValueError(f"filling must be a number in (0, 1) (electrons per spin orbital), got {filling!r}")
            n_electrons = int(round(2 * n_sites * filling))
        self.solver, self.n_sites, self.filling = solver, n_sites, filling
        self.n_electrons = check_n_electrons(n_electrons, n_sites)
        self.reuse_mu = bool(reuse_mu)
        self._last_mu: torch.Tensor | None = None

    def __call__(self, spins: torch.Tensor, **kwargs) -> ForceFieldOutput:
        name = f"n_electrons={self.n_electrons}" + ("" if self.filling is None else f" (filling={self.filling})")
        guess = self._last_mu if self.reuse_mu else None
        if guess is not None and guess.shape != spins.shape[:-2]:
            guess = None
        out = canonical(self.solver.grand_state(spins, **kwargs), self.n_electrons, name, guess)
        self._last_mu = None if out.mu is None else out.mu.detach()
        return out

    def chemical_potential(self, spins: torch.Tensor) -> torch.Tensor:
        """μ* ``[]`` / ``[B]`` (float64)."""
        return self(spins).mu

    def __repr__(self) -> str:
        return f"FixedFilling({self.solver!r}, n_electrons={self.n_electrons})"
