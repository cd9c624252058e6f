"""The ensemble layer: one root finder for μ*, one canonical wrapper over grand-canonical solvers.

Independent references: scipy's brentq for the root finder; exact diagonalisation for the KPM and
for the Legendre identity; the symmetry of ordered states (zero torque) at T_e = 0.
"""
import math

import pytest
import torch
from scipy.optimize import brentq

from sdlib import ExactSolver, KPMSolver, SDModel, lattice, random_spins
from sdlib.electrons.ed import Levels
from sdlib.electrons.ordered import spins as ordered_spins
from sdlib.ensemble import FixedFilling, canonical, find_mu
from sdlib.forcefield import torque

TOL = 1e-10  # float64 identities (same eigenpairs, same μ*)
TOL_MU = 1e-9  # μ* against brentq (energy units)
TOL_KPM = 1e-4  # KPM (400 moments, kT = 0.1) against ED, relative norm of the fields


def _fermi_number(eps, kT):
    return lambda mu: torch.sigmoid((mu[..., None] - eps) / kT).sum(-1)


def test_find_mu_matches_brentq_batched():
    eps = torch.sort(torch.randn(3, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2).values
    kT, target = 0.05, 23.0
    number = _fermi_number(eps, kT)
    mu = find_mu(number, target, eps.min(-1).values - 5, eps.max(-1).values + 5)
    for b in range(3):
        ref = brentq(lambda m: float(torch.sigmoid((m - eps[b]) / kT).sum()) - target, -20, 20, xtol=1e-14)
        assert abs(mu[b].item() - ref) < TOL_MU
    assert (number(mu) - target).abs().max() < 1e-9


def test_find_mu_refuses_a_target_outside_the_bracket():
    eps = torch.linspace(-1, 1, 20, dtype=torch.float64)
    number = _fermi_number(eps, 0.1)
    with pytest.raises(ValueError, match="electron number 25"):
        find_mu(number, 25.0, torch.tensor(-3.0, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64))


def test_find_mu_names_the_configurations_it_cannot_solve():
    """A batch where only configuration 1 cannot reach the target: the message names it and its N."""
    eps = torch.stack([torch.linspace(-1, 1, 20, dtype=torch.float64), torch.linspace(4, 6, 20, dtype=torch.float64)])

    def number(mu):
        return torch.sigmoid((mu[:, None] - eps) / 0.1).sum(-1)

    lo, hi = torch.full((2,), -3.0, dtype=torch.float64), torch.full((2,), 3.0, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"for 1 of 2 configurations \(configuration 1: N\(lo\) = [0-9.e-]+, N\(hi\)"):
        find_mu(number, 10.0, lo, hi)


@pytest.mark.parametrize("kT", [0.05, 0.0])
def test_canonical_fields_are_the_grand_fields_at_mu_star(kT):
    """F = Ω(μ*) + μ* N_e and -dF/dS = -∂Ω/∂S at μ* (at kT = 0: μ* mid-gap, any μ in the gap)."""
    lat = lattice.square(6)
    S = random_spins(lat.n_sites, (2,), seed=3)
    can = ExactSolver(SDModel(lat, J=6.0, filling=0.45, kT=kT))
    out = can(S)
    assert torch.allclose(out.number, torch.full((2,), float(can.model.n_electrons), dtype=torch.float64), atol=1e-9)
    grand = ExactSolver(SDModel(lat, J=6.0, mu=0.0, kT=kT))
    at = grand.grand(S, out.mu)
    assert torch.allclose(out.fields, at.fields, atol=TOL)
    assert torch.allclose(out.energy, at.energy + out.mu * can.model.n_electrons, atol=TOL)
    if kT == 0:  # μ* is the middle of the gap between the N_e-th and the next level
        eps = torch.linalg.eigvalsh(can.model.hamiltonian(S))
        n = can.model.n_electrons
        assert torch.allclose(out.mu, 0.5 * (eps[:, n - 1] + eps[:, n]), atol=1e-12)
        assert torch.allclose(out.energy, eps[:, :n].sum(-1), atol=TOL)


def test_fixed_filling_wraps_any_grand_solver_and_the_model_path_agrees():
    lat = lattice.triangular(6)
    S = random_spins(lat.n_sites, seed=5)
    grand = ExactSolver(SDModel(lat, J=2.0, mu=-1.0, kT=0.1))
    a = FixedFilling(grand, filling=0.25)(S)
    b = ExactSolver(SDModel(lat, J=2.0, filling=0.25, kT=0.1))(S)
    assert torch.allclose(a.fields, b.fields, atol=TOL) and torch.allclose(a.energy, b.energy, atol=TOL)
    assert FixedFilling(grand, filling=0.25).n_electrons == 18


def test_kpm_and_ed_agree_through_the_layer():
    """Grand canonical at μ and canonical at fixed N_e: KPM (no kernel, enough probing) vs ED."""
    lat = lattice.triangular(8)
    S = random_spins(lat.n_sites, seed=11)
    model = SDModel(lat, J=2.0, mu=-1.2, kT=0.1)
    kpm = KPMSolver(model, n_moments=400, probing=lat.L, kernel=None)  # every site its own colour: exact traces
    ed = ExactSolver(model)
    for a, b in ((kpm(S), ed(S)), (FixedFilling(kpm, filling=0.3)(S), FixedFilling(ed, filling=0.3)(S))):
        assert (a.fields - b.fields).norm() / b.fields.norm() < TOL_KPM
        assert abs(a.energy - b.energy) < TOL_KPM * abs(b.energy)
        assert abs(a.number - b.number) < TOL_KPM * b.number
        assert abs(a.mu - b.mu) < TOL_KPM


def test_zero_temperature_degenerate_shell_is_filled_uniformly():
    """FM order at a filling inside a degenerate shell: the canonical T_e = 0 result keeps the
    symmetry (zero torque, fields along the spins), holds exactly N_e electrons, and does not depend
    on a global rotation of the spins (i.e. not on the eigenbasis eigh returns)."""
    lat = lattice.square(4)
    S = ordered_spins("FM", lat)
    ed = ExactSolver(SDModel(lat, J=4.0, filling=3 / 32))  # 3 electrons: 1 at k = 0, 2 in the 4-fold shell above
    out = ed(S)
    assert out.number.item() == pytest.approx(3.0, abs=1e-12)
    assert torque(S, out.fields).abs().max() < 1e-12
    R = torch.linalg.matrix_exp(torch.tensor([[0, -0.3, 0.2], [0.3, 0, -0.7], [-0.2, 0.7, 0]], dtype=torch.float64))
    rot = ed(S @ R.T)
    assert torch.allclose(rot.fields, out.fields @ R.T, atol=1e-10)
    assert abs(rot.energy - out.energy) < 1e-10


def test_levels_state_protocol_and_bad_input():
    lat = lattice.square(4)
    ed = ExactSolver(SDModel(lat, J=2.0, mu=0.0, kT=0.1))
    S = random_spins(lat.n_sites, seed=1)
    st = ed.grand_state(S)
    assert isinstance(st, Levels)
    mu = torch.tensor(0.3, dtype=torch.float64)
    h = 1e-5  # N = -∂Ω/∂μ by central differences
    dn = -(st.at(mu + h).energy - st.at(mu - h).energy) / (2 * h)
    assert abs(dn - st.at(mu).number) < 1e-7
    with pytest.raises(ValueError, match="n_electrons must be an integer with 0 < n_electrons < 2N = 32"):
        FixedFilling(ed, n_electrons=40)
    with pytest.raises(ValueError, match="n_electrons"):
        FixedFilling(ed, n_electrons=0)
    with pytest.raises(ValueError, match="filling must be"):
        FixedFilling(ed, filling=1.5)
    with pytest.raises(ValueError, match="exactly one"):
        FixedFilling(ed)
    with pytest.raises(ValueError, match="kT must be"):
        ed.grand_state(S, kT=-0.1)
    with pytest.raises(ValueError, match="mu must be finite"):
        ed.grand(S, math.nan)
    with pytest.raises(ValueError, match="spins contain NaN"):
        FixedFilling(ed, n_electrons=10)(torch.full_like(S, math.nan))
    with pytest.raises(ValueError, match="grand canonical"):
        FixedFilling(lambda s: None, n_electrons=2)
    with pytest.raises(ValueError, match="kT must be"):
        SDModel(lat, J=2.0, mu=0.0, kT=-1.0)


def test_canonical_of_an_eigenvalue_state_matches_ordered_energies():
    """``ensemble.canonical`` on levels alone (no eigenvectors) gives the free energy of a level set."""
    eps = torch.linspace(-3, 3, 40, dtype=torch.float64)
    out = canonical(Levels(eps, kT=0.2), 13)
    mu = brentq(lambda m: float(torch.sigmoid((m - eps) / 0.2).sum()) - 13, -10, 10, xtol=1e-14)
    omega = -0.2 * torch.nn.functional.softplus((mu - eps) / 0.2).sum()
    assert abs(out.energy - (omega + mu * 13)) < 1e-9 and out.fields is None


@pytest.mark.parametrize("activation", ["silu", "tanh", "softplus"])
def test_network_number_by_forward_mode_equals_autograd(activation):
    """N(μ) = -Σ_i ∂ε_i/∂μ of a μ-input site energy: forward-mode pass vs reverse-mode autograd."""
    from sdlib.nn import SiteEnergyNet

    torch.manual_seed(0)
    net = SiteEnergyNet(7, hidden=(5, 4), activation=activation, mu_input=True)
    with torch.no_grad():
        net.mu_std.fill_(0.7), net.mu_mean.fill_(-0.3), net.number_shift.fill_(0.9), net.energy_scale.fill_(1.3)
    feats = torch.randn(2, 11, 7, dtype=torch.float64)
    mu = torch.tensor([-0.5, 0.4], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(net.at_features(feats)(mu).sum(), mu)
    assert torch.allclose(net.number_at_features(feats)(mu.detach()), -g, atol=1e-12)


def test_find_mu_result_does_not_depend_on_the_guess_and_a_near_guess_saves_evaluations():
    """The last stage runs in the grid cell that holds the root: any guess gives the bit-identical μ
    (so a resumed trajectory equals an uninterrupted one), and a guess near μ* needs fewer N(μ)."""
    eps = torch.sort(torch.randn(4, 80, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 2).values
    kT, target = 0.05, 37.0
    calls = []

    def number(mu):
        calls.append(1)
        return torch.sigmoid((mu[..., None] - eps) / kT).sum(-1)

    lo, hi = eps.min(-1).values - 5, eps.max(-1).values + 5
    ref = find_mu(number, target, lo, hi)
    n_full = len(calls)
    for offset in (0.0, 3e-4, -2e-3, 0.4, -7.0):  # near, a few cells away, far, outside the bracket
        calls.clear()
        mu = find_mu(number, target, lo, hi, guess=ref + offset)
        assert torch.equal(mu, ref), offset
        if abs(offset) < 1e-3:
            assert len(calls) < n_full / 2, (offset, len(calls), n_full)
    for b in range(4):
        assert abs(ref[b].item() - brentq(lambda m: float(torch.sigmoid((m - eps[b]) / kT).sum()) - target,
                                          -20, 20, xtol=1e-14)) < TOL_MU


class _CubicState:
    """A made-up grand-canonical state with Ω(μ) = -(μ⁴/4 - μ²/2), N(μ) = -dΩ/dμ = μ³ - μ + c_b:
    not monotonic, three roots of N = 0 for c_b = 0 (at -1, 0, 1), one for c_b = 1."""

    def __init__(self):
        self.c = torch.tensor([0.0, 1.0], dtype=torch.float64)
        self.bracket = (torch.full((2,), -3.0, dtype=torch.float64), torch.full((2,), 3.0, dtype=torch.float64))

    def number(self, mu):
        return mu ** 3 - mu + self.c

    def at(self, mu):
        from sdlib.forcefield import ForceFieldOutput

        omega = -(mu ** 4 / 4 - mu ** 2 / 2) - self.c * mu
        return ForceFieldOutput(omega, None, self.number(mu), mu)


def test_number_roots_of_a_non_monotonic_number_and_of_the_electrons():
    """number_roots finds the three roots of a cubic N(μ) (two rising), its drop 4/(3√3) between the
    local extrema, and F = Ω + μ N_e at each root; the single root of the cubic shifted up (the real
    root of μ³ - μ + 1, by numpy); and for exact diagonalisation one rising root at the μ* of
    FixedFilling, no drop."""
    import numpy as np
    from sdlib.ensemble import number_roots

    mus = torch.linspace(-2.0, 2.0, 4001, dtype=torch.float64)
    three, one = number_roots(_CubicState(), 0, mus)
    assert np.allclose(three["roots"], [-1.0, 0.0, 1.0], atol=1e-6) and three["rising"] == [True, False, True]
    assert math.isclose(three["largest_drop"], 4 / (3 * math.sqrt(3)), rel_tol=1e-5)
    assert np.allclose(three["free_energy"], [0.25, 0.0, 0.25], atol=1e-5)
    real = [r.real for r in np.roots([1, 0, -1, 1]) if abs(r.imag) < 1e-9]
    assert len(one["roots"]) == 1 and abs(one["roots"][0] - real[0]) < 1e-5 and one["rising"] == [True]
    lat = lattice.square(4)
    grand = ExactSolver(SDModel(lat, J=6.0, mu=0.0, kT=0.05))
    spins = random_spins(lat.n_sites, batch=2, seed=5)
    mu_star = FixedFilling(grand, n_electrons=15)(spins).mu
    scan = number_roots(grand.grand_state(spins), 15, torch.linspace(-9.0, 9.0, 18001, dtype=torch.float64))
    for b, r in enumerate(scan):
        assert len(r["roots"]) == 1 and r["rising"] == [True] and r["largest_drop"] < 1e-12
        assert abs(r["roots"][0] - mu_star[b].item()) < 1e-4
    with pytest.raises(ValueError, match="mus must be an increasing grid"):
        number_roots(_CubicState(), 0, [0.5, 0.1])
