"""Kernel polynomial method against exact diagonalisation, and its building blocks.

References: exact diagonalisation (``ExactSolver``) at the same kT; the Fermi function itself;
Chebyshev moments Σ_k T_n(ε̃_k) from the exact eigenvalues; lattice hop distances by breadth-first
search of the adjacency matrix.
"""
import math

import pytest
import torch

from sdlib import ExactSolver, SDModel, lattice
from sdlib.electrons import _chebyshev as cheb
from sdlib.electrons.kpm import KT_ERROR, KPMSolver

TOL_FIELD_JACKSON = 1e-2  # |H_KPM - H_ED| max over sites and components, M = 400, Jackson kernel
TOL_ENERGY_JACKSON = 1e-3  # energy per site, same
TOL_FIELD_PLAIN = 1e-5  # undamped series (kernel=None), M = 400
TOL_ENERGY_PLAIN = 1e-6
TOL_FERMI_PLAIN = 1e-6  # max |f_M(ε) - f(ε)|, undamped, M = 400, kT = 0.1 on a band of half-width 8
TOL_EXACT = 1e-9  # quantities that are exact up to rounding
PROBING_GAIN = 3.0  # probing must beat random vectors of equal count by at least this factor (RMS error)
MOMENTS = (100, 200, 400)

CASES = {  # name: (lattice, J, ensemble, kT)
    "square-mu": (lattice.square(8), 6.0, {"mu": -1.0}, 0.1),
    "triangular-mu": (lattice.triangular(9), 2.0, {"mu": -1.5}, 0.2),
    "square-filling": (lattice.square(8), 6.0, {"filling": 0.45}, 0.2),
}


def random_spins(n, batch=(), seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(*batch, n, 3, dtype=torch.float64, generator=g)
    return (s / s.norm(dim=-1, keepdim=True)).to(device)


def errors(out, ref, n_sites):
    return (out.fields - ref.fields).abs().max().item(), (out.energy - ref.energy).abs().max().item() / n_sites


# ---------------------------------------------------------------------- the expansion itself
@pytest.mark.parametrize("mu", [-2.0, 0.3])
def test_fermi_expansion_converges_to_fermi_function(mu):
    kT, a, b = 0.1, 8.0, 0.0
    x = torch.linspace(-0.999, 0.999, 4001, dtype=torch.float64)
    exact = torch.sigmoid(-(a * x + b - mu) / kT)
    err = {}
    for kernel in (True, False):
        for M in MOMENTS:
            K = cheb.n_nodes(M, a, kT)
            c = cheb.fermi_coefficients(torch.tensor(mu), kT, a, b, M, K, kernel)
            approx = cheb.evaluate(c, x)
            err[kernel, M] = (approx - exact).abs().max().item()
            if kernel:  # the Jackson kernel is positive: the damped series stays within [0, 1]
                assert approx.min() > -TOL_EXACT and approx.max() < 1 + TOL_EXACT
    for kernel in (True, False):
        assert err[kernel, 100] > err[kernel, 200] > err[kernel, 400]
    assert err[False, 400] < TOL_FERMI_PLAIN


def test_coefficients_match_direct_quadrature():
    """The FFT-based DCT against the Chebyshev–Gauss sum written out, for f and ω."""
    kT, a, b, M, K, mu = 0.2, 6.0, -1.0, 50, 256, torch.tensor(0.4)
    theta = math.pi * (torch.arange(K, dtype=torch.float64) + 0.5) / K
    eps = a * torch.cos(theta) + b
    cos = torch.cos(torch.arange(M, dtype=torch.float64)[:, None] * theta[None, :])
    weight = torch.full((M,), 2.0 / K, dtype=torch.float64)
    weight[0] = 1.0 / K
    f = torch.sigmoid((mu - eps) / kT)
    w = -kT * torch.log1p(torch.exp((mu - eps) / kT))
    torch.testing.assert_close(cheb.fermi_coefficients(mu, kT, a, b, M, K, False), weight * (cos @ f), rtol=0, atol=TOL_EXACT)
    torch.testing.assert_close(cheb.omega_coefficients(mu, kT, a, b, M, K, False), weight * (cos @ w), rtol=0, atol=TOL_EXACT)
    series = torch.randn(M, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    direct = (weight * series) @ cos  # Σ_n series_n c_n[g] = Σ_k w_k g(x_k)
    torch.testing.assert_close(cheb.node_weights(series, K), direct, rtol=0, atol=TOL_EXACT)


def test_moments_equal_exact_chebyshev_traces():
    """With every site its own colour the trace estimate is exact: μ_n = Σ_k T_n(ε̃_k)."""
    lat = lattice.triangular(6)
    model = SDModel(lat, J=2.0, mu=0.0, kT=0.1)
    kpm = KPMSolver(model, n_moments=41, probing=2 * lat.L)
    S = random_spins(lat.n_sites)
    x = (torch.linalg.eigvalsh(model.hamiltonian(S)) - kpm.b) / kpm.a
    n = torch.arange(41, dtype=torch.float64)
    exact = torch.cos(n[:, None] * torch.arccos(x)[None, :]).sum(-1)
    assert kpm.estimator.n_colors == lat.n_sites
    torch.testing.assert_close(kpm.moments(S), exact, rtol=0, atol=TOL_EXACT * lat.n_sites)


# ---------------------------------------------------------------------- against exact diagonalisation
@pytest.mark.parametrize("kernel", ["jackson", None])
@pytest.mark.parametrize("case", list(CASES))
def test_fields_and_energy_converge_to_exact_diagonalisation(case, kernel):
    lat, J, ens, kT = CASES[case]
    model = SDModel(lat, t=1.0, J=J, kT=kT, **ens)
    S = random_spins(lat.n_sites, seed=1)
    ref = ExactSolver(model)(S)
    # probing distance beyond the lattice: every site its own colour, only the expansion is tested
    errs = [errors(KPMSolver(model, n_moments=M, probing=2 * lat.L, kernel=kernel)(S), ref, lat.n_sites) for M in MOMENTS]
    field, energy = zip(*errs)
    assert field[0] > field[1] > field[2]
    tol_f, tol_e = (TOL_FIELD_JACKSON, TOL_ENERGY_JACKSON) if kernel else (TOL_FIELD_PLAIN, TOL_ENERGY_PLAIN)
    assert field[2] < tol_f and energy[2] < tol_e


def _rms_field_error(model, S, ref, **kw):
    out = KPMSolver(model, n_moments=300, kernel=None, **kw)(S)
    return (out.fields - ref.fields).pow(2).mean().sqrt().item()


@pytest.mark.parametrize("kind,J,mu", [("square", 6.0, -1.0), ("triangular", 2.0, -1.5)])
def test_probing_beats_random_vectors_and_improves_with_distance(kind, J, mu):
    lat = getattr(lattice, kind)(12)
    model = SDModel(lat, J=J, mu=mu, kT=0.1)
    S = random_spins(lat.n_sites, seed=2)
    ref = ExactSolver(model)(S)
    err = {d: _rms_field_error(model, S, ref, probing=d) for d in (2, 4, 6)}
    assert err[2] > err[4] > err[6]
    n_colors = cheb.probing_colors(lat, 4)[1]
    random = _rms_field_error(model, S, ref, probing=False, n_vectors=n_colors)
    assert err[4] * PROBING_GAIN < random


@pytest.mark.parametrize("kind", ["square", "triangular"])
@pytest.mark.parametrize("distance", [1, 3, 5])
def test_probing_colours_separate_sites_by_more_than_distance(kind, distance):
    lat = getattr(lattice, kind)(12)
    N = lat.n_sites
    adj = torch.zeros(N, N, dtype=torch.float64)
    adj[lat.bonds[:, 0], lat.bonds[:, 1]] = 1
    adj = adj + adj.T
    reach = torch.eye(N, dtype=torch.float64)  # sites within `distance` hops, by breadth-first search
    for _ in range(distance):
        reach = ((reach + reach @ adj) > 0).double()
    colors, n_colors = cheb.probing_colors(lat, distance)
    same = colors[:, None] == colors[None, :]
    assert not (same & (reach > 0) & ~torch.eye(N, dtype=torch.bool)).any()
    assert colors.unique().numel() == n_colors


def test_random_vectors_deterministic_and_converging():
    lat = lattice.square(6)
    model = SDModel(lat, J=6.0, mu=-1.0, kT=0.2)
    S = random_spins(lat.n_sites, seed=3)
    ref = ExactSolver(model)(S)
    a = KPMSolver(model, n_moments=100, probing=False, n_vectors=8, seed=5)(S)
    b = KPMSolver(model, n_moments=100, probing=False, n_vectors=8, seed=5)(S)
    c = KPMSolver(model, n_moments=100, probing=False, n_vectors=8, seed=6)(S)
    assert torch.equal(a.fields, b.fields) and torch.equal(a.energy, b.energy)
    assert not torch.allclose(a.fields, c.fields)
    few = _rms_field_error(model, S, ref, probing=False, n_vectors=2)
    many = _rms_field_error(model, S, ref, probing=False, n_vectors=128)
    assert many < few / 2  # error ~ R^{-1/2}: 64× the vectors, 8× smaller expected


@pytest.mark.parametrize("ens", [{"mu": -1.0}, {"filling": 0.45}])
def test_batch_equals_single_evaluations(ens):
    lat = lattice.square(6)
    kpm = KPMSolver(SDModel(lat, J=6.0, kT=0.2, **ens), n_moments=120)
    S = random_spins(lat.n_sites, batch=(3,), seed=4)
    out = kpm(S)
    assert out.energy.shape == (3,) and out.fields.shape == S.shape
    for k in range(3):
        single = kpm(S[k])
        torch.testing.assert_close(out.fields[k], single.fields, rtol=0, atol=TOL_EXACT)
        torch.testing.assert_close(out.energy[k], single.energy, rtol=0, atol=TOL_EXACT)


def test_wider_bounds_give_the_same_result():
    lat = lattice.triangular(6)
    model = SDModel(lat, J=2.0, mu=-1.0, kT=0.2)
    S = random_spins(lat.n_sites, seed=5)
    tight = KPMSolver(model, n_moments=400, kernel=None)(S)
    wide = KPMSolver(model, n_moments=400, kernel=None, bounds=(-10.0, 9.0))(S)
    torch.testing.assert_close(tight.fields, wide.fields, rtol=0, atol=TOL_FIELD_PLAIN)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kw", [{"probing": True}, {"probing": False, "n_vectors": 4}])
def test_cpu_and_cuda_agree(kw):
    lat = lattice.triangular(9)
    kpm = KPMSolver(SDModel(lat, J=2.0, filling=0.25, kT=0.1), n_moments=200, **kw)
    S = random_spins(lat.n_sites, batch=(2,), seed=6)
    cpu, gpu = kpm(S), kpm(S.cuda())
    assert gpu.fields.is_cuda
    torch.testing.assert_close(gpu.fields.cpu(), cpu.fields, rtol=0, atol=TOL_EXACT)
    torch.testing.assert_close(gpu.energy.cpu(), cpu.energy, rtol=0, atol=TOL_EXACT * lat.n_sites)


# ---------------------------------------------------------------------- bad input
def test_bad_input_is_rejected_with_a_clear_message():
    lat = lattice.triangular(6)
    model = SDModel(lat, J=2.0, mu=-1.0, kT=0.1)
    with pytest.raises(ValueError, match="kT > 0"):
        KPMSolver(SDModel(lat, J=2.0, mu=-1.0, kT=0.0))
    assert "ExactSolver" in KT_ERROR
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="n_moments"):
            KPMSolver(model, n_moments=bad)
    for bad in (0, -3, 1.5):
        with pytest.raises(ValueError, match="n_vectors"):
            KPMSolver(model, probing=False, n_vectors=bad)
    with pytest.raises(ValueError, match="n_vectors"):
        KPMSolver(model, probing=True, n_vectors=4)
    for bad in (0, -2, "near", 2.5):
        with pytest.raises(ValueError, match="probing"):
            KPMSolver(model, probing=bad)
    for bad in ((-5.0, 5.0), (-8.0, 4.0), (5.0,), "wide", (float("nan"), 9.0)):
        with pytest.raises(ValueError, match="bounds"):
            KPMSolver(model, bounds=bad)
    with pytest.raises(ValueError, match="kernel"):
        KPMSolver(model, kernel="lorentz")
    with pytest.raises(ValueError, match="spins"):
        KPMSolver(model, n_moments=10)(torch.zeros(5, 3, dtype=torch.float64))
