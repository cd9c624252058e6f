"""Chirality domains on the triangular lattice: triangle-field structure factor, wall length,
shell averages and seed statistics, against results known independently of sdlib.analysis."""
import math

import numpy as np
import pytest
import torch

from sdlib import analysis, lattice, random_spins
from sdlib.electrons import ordered

CHI_TETRA = 4 / (3 * math.sqrt(3))


def test_chirality_is_the_triple_product_and_the_tetrahedral_value():
    """χ = det[S_i, S_j, S_k] (numpy) on a random state; ±4/(3√3) on ordered.spins('tetrahedral')."""
    lat = lattice.triangular(6)
    s = random_spins(lat.n_sites, seed=3)
    det = np.linalg.det(s.numpy()[lat.triangles.numpy()])  # rows S_i, S_j, S_k of each triangle
    assert np.allclose(analysis.chirality(s, lat).numpy(), det, atol=1e-14)
    chi = analysis.chirality(ordered.spins("tetrahedral", lat), lat)
    assert torch.allclose(chi, torch.full_like(chi, chi[0].item()), atol=1e-14)
    assert abs(chi[0].item()) == pytest.approx(CHI_TETRA, abs=1e-14)
    assert torch.isinf(analysis.wall_length(chi, lat)), "a single domain has no wall"
    assert torch.allclose(analysis.chirality(-ordered.spins("tetrahedral", lat), lat), -chi), "time reversal"


def direct_structure_factor(field, lat):
    """|Σ_c δφ_c e^{-iq·c}|² / n over the triangle centres c, q the shortest vector of each grid class."""
    b = 2 * np.pi * np.linalg.inv(lat.basis).T
    c = lat.triangle_centers.numpy()
    phi = field.numpy() - field.numpy().mean()
    S = np.zeros((lat.L, lat.L))
    for m2 in range(lat.L):
        for m1 in range(lat.L):
            reps = [((m1 / lat.L + g1) * b[0] + (m2 / lat.L + g2) * b[1]) for g1 in (-1, 0, 1) for g2 in (-1, 0, 1)]
            q = min(reps, key=lambda v: (round(float(np.linalg.norm(v)), 9)))
            S[m2, m1] = abs((phi * np.exp(-1j * c @ q)).sum()) ** 2 / len(phi)
    return S


@pytest.mark.parametrize("L", [6, 7, 9])
def test_triangle_structure_factor_is_the_direct_sum_over_centres_and_even_in_q(L):
    """Also S(-q) = S(q) inside the inscribed circle |q| < |b|/2 of the Brillouin zone; on the zone
    boundary several representatives are equally short and the choice among them is arbitrary."""
    lat = lattice.triangular(L)
    g = torch.Generator().manual_seed(5)
    field = torch.randn(2 * lat.n_sites, dtype=torch.float64, generator=g)
    S = analysis.structure_factor(field, lat)
    assert np.allclose(S.numpy(), direct_structure_factor(field, lat), atol=1e-9)
    minus = S[(-torch.arange(L)) % L][:, (-torch.arange(L)) % L]  # S(-q)
    inner = analysis.q_norms(lat) < 0.5 * 4 * math.pi / math.sqrt(3) - 1e-9
    assert inner.sum() > L * L // 2
    assert torch.allclose(S[inner], minus[inner], atol=1e-9)


@pytest.mark.parametrize("k", [1, 3])
def test_structure_factor_of_a_chirality_plane_wave(k):
    """χ_c = cos(q0·c) with q0 = k b2/L: two Bragg peaks of height n/4 at ±q0, zero elsewhere."""
    lat = lattice.triangular(12)
    b2 = 2 * np.pi * np.linalg.inv(lat.basis).T[1]
    chi = torch.cos(lat.triangle_centers @ torch.from_numpy(b2 * k / lat.L))
    expected = torch.zeros(lat.L, lat.L, dtype=torch.float64)
    expected[k, 0] = expected[-k, 0] = 2 * lat.n_sites / 4  # indexed [m2, m1]
    assert torch.allclose(analysis.structure_factor(chi, lat), expected, atol=1e-9)


def stripes(lat, width, along):
    """±1 on triangles in bands of ``width`` site rows (walls along a1) or columns (walls along a2)."""
    coord = lat.coords[:, 1 if along == "a1" else 0]
    band = ((coord // width) % 2).double() * 2 - 1
    return torch.cat([band, band])  # the up and the down triangle at r lie in the same band


@pytest.mark.parametrize("along", ["a1", "a2"])
@pytest.mark.parametrize("width", [2, 3, 4])
def test_wall_length_of_straight_stripes_is_their_width(width, along):
    """Bands of w rows are w·√3/2 wide (row spacing √3/2); walls along a lattice direction."""
    lat = lattice.triangular(24)
    ell = analysis.wall_length(stripes(lat, width, along), lat)
    assert ell.item() == pytest.approx(width * math.sqrt(3) / 2, rel=1e-12)


@pytest.mark.parametrize("side", [3, 8])
def test_wall_length_of_a_hexagonal_domain(side):
    """A hexagon of side s about a site, edges along the lattice directions, holds 6 s² triangles and
    has 6 s unit edges of wall: ℓ_w = A / (6 s) with A = N √3/2."""
    lat = lattice.triangular(24)
    r = lat.triangle_centers - lat.positions[lat.index(12, 12)]
    normals = torch.tensor([[math.cos(a), math.sin(a)] for a in np.pi / 6 + np.pi / 3 * np.arange(6)])
    inside = ((r @ normals.T.double()) < side * math.sqrt(3) / 2).all(-1)
    assert inside.sum().item() == 6 * side**2
    field = inside.double() * 2 - 1
    expected = lat.n_sites * math.sqrt(3) / 2 / (6 * side)
    assert analysis.wall_length(field, lat).item() == pytest.approx(expected, rel=1e-12)
    assert analysis.wall_length(-field, lat).item() == pytest.approx(expected, rel=1e-12)


def test_wall_length_checks_the_field_size():
    lat = lattice.triangular(6)
    with pytest.raises(ValueError, match="2N=72"):
        analysis.wall_length(torch.ones(lat.n_sites, dtype=torch.float64), lat)
    with pytest.raises(ValueError, match="triangular"):
        analysis.triangle_pairs(lattice.square(6))


def test_triangle_pairs_share_an_edge():
    lat = lattice.triangular(5)
    tri = lat.triangles.numpy()
    pairs = analysis.triangle_pairs(lat).numpy()
    assert len(pairs) == 3 * lat.n_sites and len({tuple(p) for p in pairs}) == len(pairs)
    for a, b in pairs:
        assert len(set(tri[a]) & set(tri[b])) == 2
    # every triangle has three edge neighbours, and every edge of the lattice is shared once
    assert np.bincount(pairs.ravel(), minlength=2 * lat.n_sites).tolist() == [3] * (2 * lat.n_sites)


def test_radial_average_of_a_plane_wave_peaks_at_its_wave_number():
    lat = lattice.triangular(24)
    k = 5
    b1 = 2 * np.pi * np.linalg.inv(lat.basis).T[0]
    chi = torch.cos(lat.triangle_centers @ torch.from_numpy(b1 * k / lat.L))
    S = analysis.structure_factor(torch.stack([chi, 2 * chi]), lat)
    q, Sr = analysis.radial_average(S, lat)
    assert Sr.shape == (2, len(q)) and torch.all(q[1:] > q[:-1])
    dq = np.linalg.norm(b1) / lat.L  # the shell width
    assert abs(q[Sr[0].argmax()].item() - k * dq) < dq / 2
    assert torch.allclose(Sr[1], 4 * Sr[0])
    # a flat S(q) stays flat
    _, flat = analysis.radial_average(torch.ones(lat.L, lat.L, dtype=torch.float64), lat)
    assert torch.allclose(flat, torch.ones_like(flat))


def test_mean_and_error_is_the_standard_error_of_the_mean():
    from scipy import stats

    x = np.random.default_rng(1).normal(size=(7, 4))
    m, e = analysis.mean_and_error(x)
    assert np.allclose(m.numpy(), x.mean(0)) and np.allclose(e.numpy(), stats.sem(x, axis=0))
    with pytest.raises(ValueError, match="at least 2"):
        analysis.mean_and_error(x[:1])



def test_wall_anisotropy_tells_a_hexagon_from_a_disc():
    """Stripes and a hexagon (walls along lattice directions) scatter along the M directions;
    a disc (walls of every orientation) scatters isotropically: ratio 1."""
    lat = lattice.triangular(48)
    for along in ("a1", "a2"):
        S = analysis.structure_factor(stripes(lat, 4, along), lat)
        assert analysis.wall_anisotropy(S, lat, 0.2, 2.0).item() > 100
    r = lat.triangle_centers - lat.positions.mean(0)
    normals = torch.tensor([[math.cos(a), math.sin(a)] for a in np.pi / 6 + np.pi / 3 * np.arange(6)])
    hexagon = ((r @ normals.T.double()) < 12 * math.sqrt(3) / 2).all(-1).double() * 2 - 1
    disc = (r.norm(dim=-1) < 12).double() * 2 - 1
    ratio = {name: analysis.wall_anisotropy(analysis.structure_factor(f, lat), lat, 0.5, 2.5).item()
             for name, f in [("hexagon", hexagon), ("disc", disc)]}
    assert ratio["disc"] == pytest.approx(1.0, abs=0.1) and ratio["hexagon"] > 2.0
    with pytest.raises(ValueError, match="widen"):
        analysis.wall_anisotropy(S, lat, 100.0, 200.0)
