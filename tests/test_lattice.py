"""Geometry and symmetry of the lattices, checked against independent constructions."""
import math

import numpy as np
import pytest
import torch

from sdlib import lattice

KINDS = ["square", "triangular"]


def make(kind, L):
    return getattr(lattice, kind)(L)


def min_image(lat, d):
    """Minimum-image Cartesian displacement for integer displacement d [..., 2]."""
    L = lat.L
    best = None
    for sx in (-L, 0, L):
        for sy in (-L, 0, L):
            v = (d + torch.tensor([sx, sy])).double() @ torch.from_numpy(lat.basis)
            best = v if best is None else torch.where((v.norm(dim=-1) < best.norm(dim=-1))[..., None], v, best)
    return best


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("L", [3, 4, 6])
def test_bonds_are_all_nn_pairs_once(kind, L):
    lat = make(kind, L)
    z = {"square": 4, "triangular": 6}[kind]
    b = lat.bonds
    assert b.shape == (lat.n_sites * z // 2, 2)
    pairs = {tuple(sorted(p)) for p in b.tolist()}
    assert len(pairs) == len(b), "a bond appears twice"
    # every pair at Cartesian distance 1 is a bond (brute force over all pairs)
    d = lat.coords[:, None, :] - lat.coords[None, :, :]
    dist = min_image(lat, d).norm(dim=-1)
    expected = {(i, j) for i, j in zip(*np.nonzero(np.isclose(dist.numpy(), 1.0))) if i < j}
    assert pairs == expected


@pytest.mark.parametrize("L", [3, 4, 5])
def test_triangles_ccw_and_cover_each_bond_twice(L):
    lat = lattice.triangular(L)
    tri = lat.triangles
    assert tri.shape == (2 * lat.n_sites, 3)
    c = lat.coords
    e1 = min_image(lat, c[tri[:, 1]] - c[tri[:, 0]])
    e2 = min_image(lat, c[tri[:, 2]] - c[tri[:, 0]])
    area = 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    assert torch.allclose(area, torch.full_like(area, math.sqrt(3) / 4)), "not CCW unit triangles"
    count = {}
    for t in tri.tolist():
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            count[tuple(sorted((a, b)))] = count.get(tuple(sorted((a, b))), 0) + 1
    assert set(count) == {tuple(sorted(p)) for p in lat.bonds.tolist()}
    assert set(count.values()) == {2}
    assert lattice.square(L).triangles.shape == (0, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_point_group_is_a_group_of_bond_preserving_permutations(kind):
    lat = make(kind, 6)
    perms = lat.point_group_permutations
    assert perms.shape[0] == {"square": 8, "triangular": 12}[kind]
    bonds = {tuple(sorted(p)) for p in lat.bonds.tolist()}
    keys = {tuple(p.tolist()) for p in perms}
    assert len(keys) == len(perms), "operations must be distinct"
    for p in perms:
        assert torch.equal(torch.sort(p).values, torch.arange(lat.n_sites))
        assert p[0] == 0, "operations act about site 0"
        assert {tuple(sorted(q)) for q in p[lat.bonds].tolist()} == bonds
        for q in perms:  # closure: p∘q is again an operation
            assert tuple(p[q].tolist()) in keys
    # rotations preserve distances to the centre; the Cartesian matrices are orthogonal
    for _, R in lat.point_group:
        assert np.allclose(R @ R.T, np.eye(2))


def test_mirrors_reverse_triangle_orientation():
    lat = lattice.triangular(6)
    tris = {tuple(t): +1 for t in lat.triangles.tolist()}
    cyc = {}
    for t in tris:
        for k in range(3):
            cyc[t[k:] + t[:k]] = +1
            cyc[tuple(reversed(t[k:] + t[:k]))] = -1
    for (name, R), p in zip(lat.point_group, lat.point_group_permutations):
        signs = {cyc[tuple(p[list(t)].tolist())] for t in tris}
        assert signs == {int(round(np.linalg.det(R)))}, name


@pytest.mark.parametrize("kind", KINDS)
def test_translations_and_neighbor_table(kind):
    lat = make(kind, 5)
    T = lat.translation(2, 1)
    bonds = {tuple(sorted(p)) for p in lat.bonds.tolist()}
    assert {tuple(sorted(q)) for q in T[lat.bonds].tolist()} == bonds
    nb = lat.neighbors
    assert nb.shape == (lat.n_sites, lat.coordination)
    for i in range(lat.n_sites):
        assert {j for a, b in bonds if i in (a, b) for j in (a, b) if j != i} == set(nb[i].tolist())


@pytest.mark.parametrize("kind", KINDS)
def test_neighborhood_distances(kind):
    lat = make(kind, 9)
    rc = 2.5
    nbh = lat.neighborhood(rc)
    d = min_image(lat, lat.coords[nbh] - lat.coords[:, None, :]).norm(dim=-1)
    assert (d <= rc + 1e-9).all() and (d > 0).all()
    # brute force count at site 0
    d0 = min_image(lat, lat.coords - lat.coords[0]).norm(dim=-1)
    assert nbh.shape[1] == int(((d0 > 0) & (d0 <= rc + 1e-9)).sum())
    assert torch.all(d[:, :-1] <= d[:, 1:] + 1e-12), "sorted by distance"
    with pytest.raises(ValueError, match="cutoff"):
        make(kind, 4).neighborhood(rc)


@pytest.mark.parametrize("bad", [2, 0, -3, 2.5, "4", True])
def test_bad_L(bad):
    with pytest.raises(ValueError, match="L"):
        lattice.square(bad)
    with pytest.raises(ValueError, match="kind"):
        lattice.Lattice("hexagonal", 4)
