"""Observables against configurations whose answers are known by construction."""
import math

import numpy as np
import pytest
import torch

from sdlib import analysis, lattice, random_spins

CHI_TETRA = 4 / (3 * math.sqrt(3))


def tetrahedral(lat):
    """Four-sublattice state built independently: sublattice (x mod 2, y mod 2) → tetrahedron corner."""
    corners = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64) / math.sqrt(3)
    x, y = lat.coords[:, 0], lat.coords[:, 1]
    return corners[(x % 2) + 2 * (y % 2)]


def test_chirality_of_tetrahedral_state():
    lat = lattice.triangular(8)
    chi = analysis.chirality(tetrahedral(lat), lat)
    assert chi.shape == (2 * lat.n_sites,)
    assert torch.allclose(chi.abs(), torch.full_like(chi, CHI_TETRA), atol=1e-14)
    assert len(set(torch.sign(chi).tolist())) == 1, "uniform scalar chirality"
    # a mirror of the spin pattern (swap two sublattices) flips every chirality
    swapped = tetrahedral(lat)[:, [1, 0, 2]]
    assert torch.allclose(analysis.chirality(swapped, lat), -chi)


def test_structure_factor_of_stripes():
    lat = lattice.square(16)
    x = lat.coords[:, 0].double()
    k = 3
    phi = torch.cos(2 * math.pi * k * x / lat.L)
    S = analysis.structure_factor(phi, lat)
    expected = torch.zeros(16, 16, dtype=torch.float64)
    expected[0, k] = expected[0, -k] = lat.n_sites / 4  # indexed [m2, m1]
    assert torch.allclose(S, expected, atol=1e-10)
    # Parseval: Σ_q S(q) = Σ_r (φ - φ̄)²
    assert abs(S.sum() - ((phi - phi.mean()) ** 2).sum()) < 1e-9


def test_triangle_structure_factor_is_translation_invariant():
    lat = lattice.triangular(12)
    s = random_spins(lat.n_sites, seed=0)
    S0 = analysis.structure_factor(analysis.chirality(s, lat), lat)
    moved = torch.empty_like(s)
    moved[lat.translation(5, 2)] = s  # spin at r moves to r + 5a1 + 2a2
    S1 = analysis.structure_factor(analysis.chirality(moved, lat), lat)
    assert torch.allclose(S0, S1, atol=1e-10)


def sign_of_gaussian_field(lat, width, seed):
    """sign(g) of a Gaussian random field with correlation exp(-r²/(4 width²)) (white noise ∗ Gaussian)."""
    r = lat.image_norms
    kernel = torch.exp(-(r**2) / (2 * width**2))
    noise = torch.randn(lat.L, lat.L, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    g = torch.fft.ifft2(torch.fft.fft2(noise) * torch.fft.fft2(kernel)).real
    return torch.sign(g).reshape(-1)


@pytest.mark.parametrize("kind", ["square", "triangular"])
@pytest.mark.parametrize("width", [2.0, 4.0])
def test_correlation_length_of_random_domains_follows_arcsine_law(kind, width):
    """For φ = sign(g), C_φ(r) = (2/π) arcsin C_g(r) (arcsine law): C_φ = 1/2 where C_g = 1/√2,
    i.e. at r* = 2·width·√(ln √2). Averaged over 4 independent patterns (statistical error ≈ 2 %)."""
    lat = getattr(lattice, kind)(160)
    measured = np.mean([analysis.correlation_length(sign_of_gaussian_field(lat, width, s), lat).item() for s in range(4)])
    expected = 2 * width * math.sqrt(math.log(math.sqrt(2)))
    assert measured == pytest.approx(expected, rel=0.07)


def test_correlation_length_of_triangle_field_follows_domains():
    lat = lattice.triangular(48)
    x = torch.cat([lat.coords[:, 0], lat.coords[:, 0]])
    ls = [analysis.correlation_length(((x // ell) % 2).double() * 2 - 1, lat).item() for ell in (4, 8)]
    assert ls[1] / ls[0] == pytest.approx(2.0, rel=0.1)


def test_domain_length_of_a_plane_wave_is_its_wavelength():
    """⟨|q|⟩ of cos(q0·r) is q0 exactly, on both lattices."""
    for kind in ("square", "triangular"):
        lat = getattr(lattice, kind)(24)
        k = 4
        phase = 2 * math.pi * k * lat.coords[:, 0].double() / lat.L  # q = k b1 / L
        Sq = analysis.structure_factor(torch.cos(phase), lat)
        q0 = 2 * math.pi * k / lat.L * np.linalg.norm(np.linalg.inv(lat.basis).T[0])
        assert analysis.domain_length(Sq, lat).item() == pytest.approx(2 * math.pi / q0, rel=1e-10)


def test_bond_field_and_correlation():
    sq = lattice.square(6)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    fm = up.expand(sq.n_sites, 3)
    sign = ((sq.coords.sum(1) % 2) * -2 + 1).double()
    neel = sign[:, None] * up
    assert torch.allclose(analysis.bond_field(fm, sq), torch.ones(sq.n_sites, dtype=torch.float64))
    assert torch.allclose(analysis.bond_field(neel, sq), -torch.ones(sq.n_sites, dtype=torch.float64))
    assert analysis.nn_correlation(neel, sq).item() == pytest.approx(-1.0)
    tri = lattice.triangular(6)
    t = tetrahedral(tri)
    assert torch.allclose(analysis.bond_field(t, tri), torch.full((tri.n_sites,), -1 / 3, dtype=torch.float64))
    assert analysis.magnetization(t).item() == pytest.approx(0.0, abs=1e-14)


def test_clusters_across_periodic_boundaries():
    lat = lattice.square(10)
    x, y = lat.coords[:, 0], lat.coords[:, 1]
    sign = ((x + y) % 2 * -2 + 1).double()
    spins = torch.zeros(lat.n_sites, 3, dtype=torch.float64)
    spins[:, 0] = sign  # Néel along x
    region_a = ((x >= 8) | (x <= 1)) & (y >= 2) & (y <= 4)  # 4 × 3 block wrapping around x = 0
    region_b = (x >= 4) & (x <= 5) & (y >= 7) & (y <= 8)  # 2 × 2 block
    spins[region_a | region_b] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    labels = analysis.fm_clusters(spins, lat, threshold=0.5)
    assert set(labels[(region_a | region_b).numpy()]) == {0, 1}
    assert (labels[~(region_a | region_b).numpy()] == -1).all()
    areas = sorted(np.bincount(labels[labels >= 0]).tolist())
    assert areas == [4, 12]
    assert analysis.cluster_length(labels) == pytest.approx(math.sqrt(8))
    assert analysis.cluster_length(labels, weighted=True) == pytest.approx(math.sqrt((16 + 144) / 16))
    with pytest.raises(ValueError, match="threshold"):
        analysis.fm_clusters(spins, lat, threshold=1.5)


def test_growth_exponent_recovers_power_law():
    rng = np.random.default_rng(0)
    t = np.logspace(0, 3, 40)
    L = 3.0 * t**0.4 * np.exp(0.01 * rng.standard_normal(t.size))
    n, err = analysis.growth_exponent(t, L)
    assert abs(n - 0.4) < 4 * err and err < 0.01
    n_late, _ = analysis.growth_exponent(t, L, t_min=100)
    assert abs(n_late - 0.4) < 0.05
    with pytest.raises(ValueError, match="at least 3"):
        analysis.growth_exponent(t, L, t_min=1e5)


def test_onset_time_and_largest_deviation_of_known_curves():
    t = np.linspace(0.0, 10.0, 11)
    L = 0.5 + 0.1 * t                                     # reaches 1 at t = 5 exactly, 1.2 at t = 7
    assert analysis.onset_time(t, L) == pytest.approx(5.0, abs=1e-12)
    assert analysis.onset_time(t, L, level=1.25) == pytest.approx(7.5, abs=1e-12)  # between stored times
    assert analysis.onset_time(t, L, level=0.3) == 0.0    # already there at the first time
    assert math.isnan(analysis.onset_time(t, L, level=2.0))
    assert analysis.onset_time(torch.tensor(t), torch.tensor(L)) == pytest.approx(5.0, abs=1e-12)
    ref = 2 * L
    L2 = ref * np.where(t >= 6, 1 + 0.01 * t, 1 - 0.5)    # wrong by half before t = 6, by 1 % x t after
    assert analysis.largest_deviation(t, L2, ref, t_min=6) == pytest.approx(0.10, abs=1e-12)
    assert analysis.largest_deviation(t, L2, ref, t_min=0) == pytest.approx(0.5, abs=1e-12)
    assert math.isnan(analysis.largest_deviation(t, L2, ref, t_min=11))
    with pytest.raises(ValueError, match="same length"):
        analysis.onset_time(t, L[:-1])
    with pytest.raises(ValueError, match="one length"):
        analysis.largest_deviation(t, L, ref[:-1], t_min=0)


def test_fit_window_applies_each_rule():
    t = np.geomspace(1, 100, 9)              # 9 points over a factor 100
    L = 2 * t ** 0.5                          # grows by a factor 10
    assert analysis.fit_window(t, L, 1).ok
    w = analysis.fit_window(t, L, 10)         # t in [10, 100]: 5 points, growth sqrt(10)
    assert (w.points, w.ok) == (5, True) and w.growth == pytest.approx(10 ** 0.5) and w.span == pytest.approx(10)
    assert not analysis.fit_window(t, L, 10, min_points=6).ok
    assert not analysis.fit_window(t, L, 10, min_growth=4).ok
    assert not analysis.fit_window(t, L, 10, min_span=20).ok
    assert not analysis.fit_window(t, L, 1, min_length=2.5).ok          # L(1) = 2 is too small
    assert analysis.fit_window(t, L, 1, t_max=10).points == 5
    L_nan = L.copy(); L_nan[-1] = np.nan                                 # non-finite points do not count
    assert analysis.fit_window(t, L_nan, 10).points == 4
    assert analysis.fit_window(t, L, 1000) == (False, 0, 0.0, 0.0)


def test_fit_window_refuses_bad_rules():
    t = np.arange(1.0, 6.0)
    with pytest.raises(ValueError, match="min_growth"):
        analysis.fit_window(t, t, 1, min_growth=0.5)
    with pytest.raises(ValueError, match="same length"):
        analysis.fit_window(t, t[:-1], 1)


def test_power_law_guides_start_at_the_fit_start():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sdlib.plotting import plot_power_laws

    t = np.geomspace(0.1, 100, 13)
    L = 3 * t ** 0.4
    fig, ax = plt.subplots()
    plot_power_laws(ax, t, L, t0=1.0, exponents=(1.0, 0.5, 1 / 3))
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["∝ t", "∝ t^1/2", "∝ t^1/3"]
    k = int(np.argmax(t >= 1.0))
    for ln, n in zip(lines, (1.0, 0.5, 1 / 3)):
        x, y = ln.get_data()
        assert x[0] == pytest.approx(t[k]) and y[0] == pytest.approx(L[k]) and x[-1] == pytest.approx(t[-1])
        assert np.log(y[-1] / y[0]) / np.log(x[-1] / x[0]) == pytest.approx(n)
    with pytest.raises(ValueError, match="t0"):
        plot_power_laws(ax, t, L, t0=1000.0)
    plt.close(fig)


def test_sample_exponents_fit_each_quench_on_the_window():
    t = np.geomspace(0.5, 500.0, 40)
    n_true = np.array([0.2, 0.3, 0.45])
    L = np.array([2.0 * (k + 1) * t ** n for k, n in enumerate(n_true)])
    L[:, t < 5.0] = 1.0  # before the window: flat, must not enter the fit
    got = analysis.sample_exponents(t, L, t_min=5.0, t_max=200.0)
    assert np.allclose(got, n_true, rtol=1e-12, atol=0)
    L[1, (t >= 5.0)] = 0.0  # no clusters in the window: that quench has no exponent
    L[1, 25] = 1.0
    got = analysis.sample_exponents(t, L, t_min=5.0)
    assert np.isnan(got[1]) and np.allclose(got[[0, 2]], n_true[[0, 2]], rtol=1e-12)
    mean, err = analysis.mean_and_error(got[np.isfinite(got)])
    assert float(mean) == pytest.approx(n_true[[0, 2]].mean()) and float(err) == pytest.approx(0.125, rel=1e-9)
    with pytest.raises(ValueError, match="L_samples"):
        analysis.sample_exponents(t, L[:, :-1])


def test_fm_sites_of_a_flipped_spin_in_a_ferromagnet():
    """One spin flipped in a square ferromagnet: it has no FM bond, its four neighbours 3 of 4
    (inside a cluster at the default 3/4), every other site 4 of 4; a Néel state has none."""
    lat = lattice.square(6)
    s = torch.zeros(lat.n_sites, 3, dtype=torch.float64)
    s[:, 2] = 1.0
    flip = lat.index(2, 3)
    s[flip, 2] = -1.0
    fm = analysis.fm_sites(s, lat)
    neighbours = {lat.index(1, 3), lat.index(3, 3), lat.index(2, 2), lat.index(2, 4)}
    assert not fm[flip] and fm.sum() == lat.n_sites - 1
    strict = analysis.fm_sites(s, lat, min_fraction=1.0)
    assert sorted(torch.nonzero(~strict).reshape(-1).tolist()) == sorted(neighbours | {flip})
    neel = s.clone()
    neel[:, 2] = ((lat.coords.sum(1) % 2) * -2 + 1).double()
    assert not analysis.fm_sites(neel, lat).any()
    for bad in (0.0, 1.5, "3/4"):
        with pytest.raises(ValueError, match="min_fraction"):
            analysis.fm_sites(s, lat, min_fraction=bad)
