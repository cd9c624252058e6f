"""Ferromagnetic clusters, their lengths and the bond field, against independent constructions.

The references here do not use ``sdlib.analysis``: a breadth-first search over the periodic grid
written out with explicit (x ± 1 mod L, y ± 1 mod L) neighbours, patterns whose cluster areas are
known by construction, and the identity mean(φ) = ⟨S_i·S_j⟩_bonds (each bond is counted by both
of its sites, and there are zN/2 bonds).
"""
import math
from collections import deque

import numpy as np
import pytest
import torch

from sdlib import analysis, lattice, random_spins
from sdlib.electrons import ordered

UP = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)


def bfs_partition(spins, L, threshold):
    """Clusters of the square L × L torus joined by bonds with S_i·S_j > threshold, as a set of frozensets."""
    s = spins.numpy().reshape(L, L, 3)  # [y, x, :] since i = x + L y
    seen, clusters = np.zeros((L, L), bool), set()
    steps = ((1, 0), (-1, 0), (0, 1), (0, -1))
    for y0 in range(L):
        for x0 in range(L):
            if seen[y0, x0]:
                continue
            seen[y0, x0] = True
            members, queue = {x0 + L * y0}, deque([(x0, y0)])
            while queue:
                x, y = queue.popleft()
                for dx, dy in steps:
                    u, v = (x + dx) % L, (y + dy) % L
                    if not seen[v, u] and s[y, x] @ s[v, u] > threshold:
                        seen[v, u] = True
                        members.add(u + L * v)
                        queue.append((u, v))
            if len(members) > 1:
                clusters.add(frozenset(members))
    return clusters


def partition_of(labels):
    return {frozenset(np.flatnonzero(labels == k).tolist()) for k in range(labels.max() + 1)}


def neel_with_blocks(lat, blocks):
    """Néel background (spins ±x̂) with FM (+ẑ) squares; ``blocks`` = [(x0, y0, side), ...], wrapped periodically."""
    x, y = lat.coords[:, 0], lat.coords[:, 1]
    spins = ordered.spins("Neel", lat)[:, [2, 1, 0]].clone()  # staggered along x̂: orthogonal to the FM blocks
    for x0, y0, side in blocks:
        inside = ((x - x0) % lat.L < side) & ((y - y0) % lat.L < side)
        spins[inside] = UP
    return spins


@pytest.mark.parametrize("threshold", [-0.3, 0.0, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_clusters_of_random_spins_match_breadth_first_search(threshold, seed):
    lat = lattice.square(9)
    spins = random_spins(lat.n_sites, seed=seed)
    labels = analysis.fm_clusters(spins, lat, threshold)
    assert partition_of(labels) == bfs_partition(spins, lat.L, threshold)
    isolated = set(range(lat.n_sites)) - set().union(*bfs_partition(spins, lat.L, threshold))
    assert set(np.flatnonzero(labels == -1).tolist()) == isolated


def test_block_through_the_corner_is_one_cluster():
    """A 4 × 4 block centred on the corner of the unit cell is cut into four pieces without periodicity."""
    lat = lattice.square(12)
    spins = neel_with_blocks(lat, [(10, 10, 4)])
    labels = analysis.fm_clusters(spins, lat, threshold=0.0)
    assert labels.max() == 0 and (labels == 0).sum() == 16
    corners = lat.index(torch.tensor([10, 1, 10, 1]), torch.tensor([10, 10, 1, 1]))
    assert (labels[corners.numpy()] == 0).all()
    assert analysis.cluster_length(labels) == pytest.approx(4.0)


def test_winding_stripe_is_one_cluster_spanning_the_torus():
    lat = lattice.square(10)
    spins = neel_with_blocks(lat, [(0, 3, 2)])
    spins[(lat.coords[:, 1] >= 3) & (lat.coords[:, 1] < 5)] = UP  # rows y = 3, 4: a stripe around x
    labels = analysis.fm_clusters(spins, lat, threshold=0.0)
    assert labels.max() == 0 and (labels == 0).sum() == 20


@pytest.mark.parametrize("side", [2, 3, 5])
def test_cluster_length_of_equal_squares_is_their_side(side):
    lat = lattice.square(4 * side + 4)
    period = lat.L // 2  # four squares, well separated
    blocks = [(a, b, side) for a in (0, period) for b in (0, period)]
    labels = analysis.fm_clusters(neel_with_blocks(lat, blocks), lat, threshold=0.5)
    assert labels.max() == 3
    assert analysis.cluster_length(labels) == pytest.approx(side)
    assert analysis.cluster_length(labels, weighted=True) == pytest.approx(side)


def test_cluster_length_averages_of_mixed_squares():
    lat = lattice.square(24)
    sides = [2, 3, 6]
    labels = analysis.fm_clusters(neel_with_blocks(lat, [(0, 0, 2), (8, 0, 3), (4, 12, 6)]), lat, threshold=0.5)
    areas = np.array(sides, float) ** 2
    assert analysis.cluster_length(labels) == pytest.approx(math.sqrt(areas.mean()))
    assert analysis.cluster_length(labels, weighted=True) == pytest.approx(math.sqrt((areas**2).sum() / areas.sum()))
    assert analysis.cluster_length(np.full(lat.n_sites, -1)) == 0.0


def test_correlation_length_of_blocks_scales_with_their_size():
    """Self-similar patterns (side ℓ, period 4ℓ): the φ correlation length doubles with ℓ.

    Only once ℓ is well above the lattice spacing: the one-site boundary layer of φ (±3/4 at the
    block edges) makes ℓ = 4 → 8 give a ratio of 1.7, ℓ = 8 → 16 a ratio of 1.99.
    """
    lat = lattice.square(128)
    lengths = []
    for side in (8, 16):
        blocks = [(a, b, side) for a in range(0, 128, 4 * side) for b in range(0, 128, 4 * side)]
        phi = analysis.bond_field(neel_with_blocks(lat, blocks), lat)
        lengths.append(analysis.correlation_length(phi, lat).item())
    assert lengths[1] / lengths[0] == pytest.approx(2.0, rel=0.03)


@pytest.mark.parametrize("L", [6, 8])
def test_bond_field_of_ordered_states(L):
    lat = lattice.square(L)
    expected = {"FM": 1.0, "Neel": -1.0, "stripe": 0.0}  # stripe: two FM and two AFM bonds per site
    for name, value in expected.items():
        phi = analysis.bond_field(ordered.spins(name, lat), lat)
        assert torch.allclose(phi, torch.full((lat.n_sites,), value, dtype=torch.float64), atol=1e-14), name


def test_bond_field_of_random_spins_by_explicit_neighbours():
    lat = lattice.square(7)
    spins = random_spins(lat.n_sites, seed=3)
    s = spins.reshape(lat.L, lat.L, 3)  # [y, x]
    nb = sum(torch.roll(s, shifts=k, dims=d) for k in (1, -1) for d in (0, 1))
    expected = (s * nb).sum(-1).reshape(-1) / 4
    phi = analysis.bond_field(spins, lat)
    assert torch.allclose(phi, expected, atol=1e-14)
    assert phi.mean().item() == pytest.approx(analysis.nn_correlation(spins, lat).item(), abs=1e-14)
    batch = torch.stack([spins, -spins])
    assert torch.allclose(analysis.bond_field(batch, lat), torch.stack([phi, phi]), atol=1e-14)


def test_growth_exponent_of_a_broken_power_law():
    """L = t^{1/3} up to t = 100, then t^{0.1} (continuous): fits on either side recover each exponent."""
    t = np.logspace(0, 4, 60)
    L = np.where(t <= 100, t ** (1 / 3), 100 ** (1 / 3 - 0.1) * t**0.1)
    early, _ = analysis.growth_exponent(t, L, t_max=100)
    late, _ = analysis.growth_exponent(t, L, t_min=100)
    assert early == pytest.approx(1 / 3, abs=1e-10) and late == pytest.approx(0.1, abs=1e-10)
    whole, err = analysis.growth_exponent(t, L)
    assert 0.1 + 3 * err < whole < 1 / 3 - 3 * err, "a single fit through the break sits between the two"
