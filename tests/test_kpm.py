"""Kernel polynomial method against exact diagonalisation, and its building blocks.

References: exact diagonalisation (``ExactSolver``) at the same kT; the Fermi function itself;
Chebyshev moments Σ_k T_n(ε̃_k) from the exact eigenvalues; lattice hop distances by breadth-first
search of the adjacency matrix; the density matrix f(H) of the ferromagnet by dense diagonalisation.
"""
import math

import pytest
import torch

from sdlib import ExactSolver, SDModel, lattice, random_spins
from sdlib.electrons import _chebyshev as cheb
from sdlib.electrons.kpm import KT_ERROR, PROBING_TOL, SERIES_TOL, KPMSolver

TOL_FIELD_JACKSON = 1e-2  # |H_KPM - H_ED| max over sites and components, M = 400, Jackson kernel
TOL_ENERGY_JACKSON = 1e-3  # energy per site, same
TOL_FIELD_PLAIN = 1e-5  # undamped series (kernel=None), M = 400
TOL_ENERGY_PLAIN = 1e-6
TOL_FERMI_PLAIN = 1e-6  # max |f_M(ε) - f(ε)|, undamped, M = 400, kT = 0.1 on a band of half-width 8
TOL_EXACT = 1e-9  # quantities that are exact up to rounding
PROBING_GAIN = 3.0  # probing must beat random vectors of equal count by at least this factor (RMS error)
TOL_DEFAULT = 1e-4  # ||H_KPM - H_ED|| / ||H_ED|| of the default solver (the target of its defaults)
TOL_ENERGY_DEFAULT = 1e-7  # |E_KPM - E_ED| per site, default solver (measured <= 4e-10)
TOL_SERIES_FACTOR = 2.0  # max_ε |f_M - f| <= this · SERIES_TOL at the default M (measured 0.1–1.0)
OLD_DEFAULT_DISTANCE = 6  # the former fixed default: 2 % field error at kT = 0.1 on 12 × 12 triangular
SHORT_DISTANCE = 8  # too short at kT = 0.5 / 1.0 on 24 × 24 (ferromagnet: 9e-4; the default d is 15 / 13)
MOMENTS = (100, 200, 400)

CASES = {  # name: (lattice, J, ensemble, kT)
    "square-mu": (lattice.square(8), 6.0, {"mu": -1.0}, 0.1),
    "triangular-mu": (lattice.triangular(9), 2.0, {"mu": -1.5}, 0.2),
    "square-filling": (lattice.square(8), 6.0, {"filling": 0.45}, 0.2),
}

# the default solver: the triangular case, the square double-exchange case at the two
# electron temperatures, and a fixed-filling one (study 2's filling)
DEFAULT_CASES = {  # name: (lattice, J, ensemble, kT)
    "triangular-kT0.1": (lattice.triangular(12), 2.0, {"mu": -1.2}, 0.1),
    "square-kT0.1": (lattice.square(12), 6.0, {"mu": -3.0}, 0.1),
    "square-kT0.05": (lattice.square(12), 6.0, {"mu": -3.0}, 0.05),
    "square-filling-kT0.05": (lattice.square(12), 6.0, {"filling": 0.485}, 0.05),
}


def errors(out, ref, n_sites):
    return (out.fields - ref.fields).abs().max().item(), (out.energy - ref.energy).abs().max().item() / n_sites


def relative_error(out, ref):
    return ((out.fields - ref.fields).norm() / ref.fields.norm()).item()


def ferromagnet(n_sites):
    S = torch.zeros(n_sites, 3, dtype=torch.float64)
    S[:, 2] = 1.0
    return S


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


@pytest.mark.parametrize("a,kT", [(6.566, 0.1), (10.1, 0.05), (10.1, 0.5), (8.0, 0.02)])
def test_default_moments_resolve_the_fermi_function(a, kT):
    """At the default M the undamped series matches f to ~SERIES_TOL everywhere; at M/2 it does not."""
    M = cheb.default_moments(a, kT)
    assert M % 10 == 0 and math.exp(-cheb.fermi_decay_rate(a, kT) * M) <= SERIES_TOL
    x = torch.linspace(-0.999, 0.999, 20001, dtype=torch.float64)
    for mu in (0.0, 0.3, -0.5 * a):
        exact = torch.sigmoid((mu - a * x) / kT)
        err = {}
        for m in (M, M // 2):
            c = cheb.fermi_coefficients(torch.tensor(mu), kT, a, 0.0, m, cheb.n_nodes(m, a, kT), False)
            err[m] = (cheb.evaluate(c, x) - exact).abs().max().item()
        assert err[M] < TOL_SERIES_FACTOR * SERIES_TOL
        assert err[M // 2] > 10 * TOL_SERIES_FACTOR * SERIES_TOL


def test_default_moments_grow_as_one_over_kT():
    a = 10.1
    Ms = [cheb.default_moments(a, kT) for kT in (0.4, 0.2, 0.1, 0.05)]
    assert Ms == sorted(Ms) and len(set(Ms)) == 4
    assert all(abs(Ms[k + 1] / Ms[k] - 2) < 0.1 for k in range(3))  # η ≈ πkT/a
    assert cheb.default_moments(a, 0.05) == 890 and cheb.default_moments(a, 0.1) == 450


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
    S = random_spins(lat.n_sites, seed=0)
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


# ---------------------------------------------------------------------- the defaults, against exact diagonalisation
@pytest.mark.parametrize("case", list(DEFAULT_CASES))
def test_default_solver_matches_exact_diagonalisation(case):
    lat, J, ens, kT = DEFAULT_CASES[case]
    model = SDModel(lat, t=1.0, J=J, kT=kT, **ens)
    S = random_spins(lat.n_sites, seed=7)
    ref = ExactSolver(model)(S)
    kpm = KPMSolver(model)
    assert kpm.kernel is None and kpm.n_moments == cheb.default_moments(kpm.a, kT)
    # ρ reaches across these 12 × 12 tori at kT <= 0.1: the default colours every site apart
    assert kpm.estimator.n_colors == lat.n_sites
    out = kpm(S)
    assert relative_error(out, ref) < TOL_DEFAULT
    assert (out.energy - ref.energy).abs().item() / lat.n_sites < TOL_ENERGY_DEFAULT


@pytest.mark.parametrize("kind,J,mu,kT,moments", [
    ("triangular", 2.0, -1.2, 0.1, (100, 200, 400)),
    ("square", 6.0, -3.0, 0.05, (200, 400, 800)),
])
def test_default_probing_error_falls_as_moments_are_added(kind, J, mu, kT, moments):
    """With the default probing and kernel only the expansion is left: the error falls with M and is
    within TOL_DEFAULT at 400 moments. The former fixed distance stays far above it (random spins on
    the triangular lattice, as measured in the issue; on the square lattice with J = 6 random spins
    scatter strongly and the ferromagnet is the case that needs the distance)."""
    lat = getattr(lattice, kind)(12)
    model = SDModel(lat, J=J, mu=mu, kT=kT)
    S = random_spins(lat.n_sites, seed=8)
    ref = ExactSolver(model)(S)
    err = [relative_error(KPMSolver(model, n_moments=M)(S), ref) for M in moments]
    assert err[0] > err[1] > err[2]
    assert err[moments.index(400)] < TOL_DEFAULT
    if kind == "square":
        S = ferromagnet(lat.n_sites)
        ref = ExactSolver(model)(S)
    old = relative_error(KPMSolver(model, n_moments=400, probing=OLD_DEFAULT_DISTANCE)(S), ref)
    assert old > 100 * TOL_DEFAULT


@pytest.mark.parametrize("kind,J,mu,kT", [("square", 6.0, -3.0, 0.5), ("triangular", 2.0, -1.2, 1.0)])
def test_default_distance_suffices_and_is_needed_where_probing_is_not_exact(kind, J, mu, kT):
    """At high kT on 24 × 24 the default distance is shorter than the torus (fewer colours than
    sites); the ferromagnet, the longest-ranged texture, and random spins are then both within
    TOL_DEFAULT, while a shorter distance misses it for the ferromagnet. (The rule is conservative:
    on the square lattice d = 10, 72 colours instead of 192, would have sufficed.)"""
    lat = getattr(lattice, kind)(24)
    model = SDModel(lat, J=J, mu=mu, kT=kT)
    kpm = KPMSolver(model)
    d = kpm.estimator.distance
    assert kpm.estimator.n_colors < lat.n_sites and d == kpm.thermal_distance()
    for S in (ferromagnet(lat.n_sites), random_spins(lat.n_sites, seed=9)):
        assert relative_error(kpm(S), ExactSolver(model)(S)) < TOL_DEFAULT
    S = ferromagnet(lat.n_sites)
    assert d > SHORT_DISTANCE
    short = KPMSolver(model, probing=SHORT_DISTANCE)
    assert relative_error(short(S), ExactSolver(model)(S)) > TOL_DEFAULT


# ---------------------------------------------------------------------- the ingredients of the default distance
@pytest.mark.parametrize("kind", ["square", "triangular"])
def test_ferromagnet_density_matrix_and_mu_match_diagonalisation(kind):
    lat = getattr(lattice, kind)(6)
    J, mu, kT = 2.0, -1.0, 0.3
    model = SDModel(lat, J=J, mu=mu, kT=kT)
    e, V = torch.linalg.eigh(model.hamiltonian(ferromagnet(lat.n_sites)))
    f = (V * torch.sigmoid((mu - e) / kT)) @ V.conj().T  # rows/columns 2i + s, spins along +z
    rho = cheb.ferromagnet_density_matrix(lat, 1.0, J, mu, kT)
    x, y = lat.coords[:, 0], lat.coords[:, 1]
    for s in (0, 1):  # J > 0: majority = spin up
        torch.testing.assert_close(rho[s, x, y], f[s, 2 * torch.arange(lat.n_sites) + s], rtol=0, atol=TOL_EXACT)
    filling = 0.3
    mu_f = cheb.ferromagnet_mu(lat, 1.0, J, filling, kT)
    assert abs(torch.sigmoid((mu_f - e) / kT).sum().item() - filling * 2 * lat.n_sites) < TOL_EXACT


@pytest.mark.parametrize("kind", ["square", "triangular"])
def test_torus_hops_match_breadth_first_search(kind):
    lat = getattr(lattice, kind)(7)
    N = lat.n_sites
    adj = torch.zeros(N, N, dtype=torch.bool)
    adj[lat.bonds[:, 0], lat.bonds[:, 1]] = True
    adj = adj | adj.T
    dist = torch.full((N,), -1)
    dist[0], frontier, r = 0, torch.zeros(N, dtype=torch.bool), 0
    frontier[0] = True
    while frontier.any():
        r += 1
        frontier = adj[frontier].any(0) & (dist < 0)
        dist[frontier] = r
    hops = cheb.torus_hops(lat)
    assert torch.equal(hops[lat.coords[:, 0], lat.coords[:, 1]], dist)


def test_thermal_distance_shrinks_with_temperature_and_covers_small_tori():
    big = lattice.square(96)
    d = [cheb.thermal_distance(big, 1.0, 6.0, -3.0, kT, PROBING_TOL) for kT in (0.1, 0.2, 0.5, 1.0)]
    assert d == sorted(d, reverse=True) and len(set(d)) == 4
    assert cheb.thermal_distance(big, 1.0, 6.0, -3.0, 0.5, 1e-2) < d[2]  # a looser tolerance, a shorter distance
    small = lattice.triangular(12)  # kT = 0.1: ρ reaches across the torus, so every site its own colour
    d_small = cheb.thermal_distance(small, 1.0, 2.0, -1.2, 0.1, PROBING_TOL)
    assert d_small == int(cheb.torus_hops(small).max())
    assert cheb.probing_colors(small, d_small)[1] == small.n_sites


def test_canonical_default_distance_uses_the_ferromagnet_at_that_filling():
    lat = lattice.square(48)
    model = SDModel(lat, J=6.0, filling=0.485, kT=0.3)
    mu = cheb.ferromagnet_mu(lat, 1.0, 6.0, 0.485, 0.3)
    assert KPMSolver(model).estimator.distance == cheb.thermal_distance(lat, 1.0, 6.0, mu, 0.3, PROBING_TOL)


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
    for bad in (1, 0, 2.5, True, "400"):
        with pytest.raises(ValueError, match="n_moments"):
            KPMSolver(model, n_moments=bad)
    for bad in (0, -3, 1.5):
        with pytest.raises(ValueError, match="n_vectors"):
            KPMSolver(model, probing=False, n_vectors=bad)
    with pytest.raises(ValueError, match="n_vectors"):
        KPMSolver(model, probing=True, n_vectors=4)
    for bad in (0, -2, "near", 2.5, "AUTO", None):
        with pytest.raises(ValueError, match="probing"):
            KPMSolver(model, probing=bad)
    for bad in ((-5.0, 5.0), (-8.0, 4.0), (5.0,), "wide", (float("nan"), 9.0)):
        with pytest.raises(ValueError, match="bounds"):
            KPMSolver(model, bounds=bad)
    for bad in ("lorentz", "auto", "Jackson", 1, True):
        with pytest.raises(ValueError, match="kernel"):
            KPMSolver(model, kernel=bad)
    for bad in (0.0, -1e-3, float("nan"), "1e-4"):
        with pytest.raises(ValueError, match="tol"):
            KPMSolver(model).thermal_distance(bad)
    with pytest.raises(ValueError, match="kT"):
        cheb.fermi_decay_rate(6.0, 0.0)
    for bad in (0.0, 1.0, float("inf")):
        with pytest.raises(ValueError, match="tol"):
            cheb.default_moments(6.0, 0.1, bad)
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match="filling"):
            cheb.ferromagnet_mu(lat, 1.0, 2.0, bad, 0.1)
    with pytest.raises(ValueError, match="spins"):
        KPMSolver(model, n_moments=10)(torch.zeros(5, 3, dtype=torch.float64))
