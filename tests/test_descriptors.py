"""Tests of the symmetry-invariant descriptors (sdlib.descriptors).

Independent references: group axioms and the orthogonality theorems for the character tables;
the lattice's own site permutations for the point-group representation; exact symmetry
operations applied to whole spin configurations for the invariances; finite differences
(``gradcheck``) for the derivatives; analytic ordered states for discrimination.
"""
import json
import math
import re

import numpy as np
import pytest
import torch

from sdlib import lattice, random_spins
from sdlib.descriptors import (Descriptor, Neighborhood, PointGroup, character_projector,
                               symmetry_adapted_basis)

TOL_EXACT = 1e-12   # float64 identities (symmetries, orthogonality)
TOL_F32 = 1e-4      # float32 vs float64 features, relative
KINDS = ["square", "triangular"]


def make(kind, L):
    return getattr(lattice, kind)(L)


def move(spins, perm):
    """The configuration with the spin of site i moved to site perm[i]."""
    out = torch.empty_like(spins)
    out[..., perm, :] = spins
    return out


def tetrahedral(lat, sign=1):
    """Four-sublattice tetrahedral order on the triangular lattice (2 × 2 cell)."""
    corners = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64) / math.sqrt(3)
    c = lat.coords
    return sign * corners[(c[:, 0] % 2) + 2 * (c[:, 1] % 2)]


@pytest.fixture(scope="module", params=[(k, None, None) for k in KINDS] + [("square", 3.0, 1.5), ("triangular", 3.0, 1.0)],
                ids=lambda p: p[0] if p[1] is None else f"{p[0]}-lean")
def setup(request):
    kind, cutoff, phase_cutoff = request.param
    lat = make(kind, 7)
    return lat, Descriptor(lat, cutoff=cutoff, phase_cutoff=phase_cutoff)


# ---------------------------------------------------------------------------- group theory
@pytest.mark.parametrize("kind", KINDS)
def test_character_table_orthonormal(kind):
    G = PointGroup(make(kind, 6).point_group)
    chi = np.array([ir.characters for ir in G.irreps])  # [Γ, g]
    assert len(G.irreps) == len(G.classes)
    assert np.allclose(chi @ chi.T / G.order, np.eye(len(chi)), atol=TOL_EXACT)        # rows
    sizes = np.array([len(c) for c in G.classes])
    cols = chi[:, [c[0] for c in G.classes]]
    assert np.allclose(cols.T @ cols, np.diag(G.order / sizes), atol=TOL_EXACT)         # columns
    assert sum(ir.dim ** 2 for ir in G.irreps) == G.order
    # the Cartesian 2 × 2 matrices are the vector irrep (E for D4, E1 for C6v)
    vec = [ir for ir in G.irreps if ir.name in ("E", "E1")][0]
    assert np.allclose(np.trace(G.matrices, axis1=1, axis2=2), vec.characters, atol=TOL_EXACT)


@pytest.mark.parametrize("kind", KINDS)
def test_irrep_matrices_are_orthogonal_homomorphisms(kind):
    G = PointGroup(make(kind, 6).point_group)
    for ir in G.irreps:
        D = ir.matrices
        assert np.allclose(np.trace(D, axis1=1, axis2=2), ir.characters, atol=TOL_EXACT)
        assert np.allclose(D @ D.transpose(0, 2, 1), np.eye(ir.dim), atol=TOL_EXACT)
        prod = np.einsum("aij,bjk->abik", D, D)
        assert np.allclose(prod, D[G.table], atol=TOL_EXACT)


@pytest.mark.parametrize("kind", KINDS)
def test_variable_representation_matches_lattice_action(kind):
    """v(gS) at the centre equals D(g) v(S), with D a homomorphism; mirrors flip chiralities."""
    lat = make(kind, 7)
    desc = Descriptor(lat)
    nb, G = desc.neighborhood, desc.group
    S = random_spins(lat.n_sites, seed=1)
    v = desc.variables(S)[0]
    for g, (_, R) in enumerate(lat.point_group):
        vg = desc.variables(move(S, lat.permutation(R, 0)))[0]
        assert torch.allclose(vg, torch.from_numpy(nb.rep[g]) @ v, atol=TOL_EXACT)
        tri = nb.rep[g][len(nb.bonds):, len(nb.bonds):]
        assert np.allclose(np.abs(tri).sum(0), 1) and np.allclose(tri.sum(0), np.linalg.det(R))
    assert np.allclose(np.einsum("aij,bjk->abik", nb.rep, nb.rep), nb.rep[G.table], atol=TOL_EXACT)


@pytest.mark.parametrize("kind", KINDS)
def test_projectors_idempotent_orthogonal_complete(kind):
    lat = make(kind, 7)
    nb = Neighborhood(lat)
    G = PointGroup(lat.point_group)
    Ps = [character_projector(nb.rep, ir) for ir in G.irreps]
    n = nb.n_variables
    for a, Pa in enumerate(Ps):
        assert np.allclose(Pa @ Pa, Pa, atol=TOL_EXACT)
        mult = np.mean(G.irreps[a].characters * np.trace(nb.rep, axis1=1, axis2=2))  # (1/|G|)Σχ tr D
        assert abs(mult - round(mult)) < TOL_EXACT and mult >= 0
        assert abs(np.trace(Pa) - G.irreps[a].dim * mult) < 1e-9
        for Pb in Ps[a + 1:]:
            assert np.allclose(Pa @ Pb, 0, atol=TOL_EXACT)
    assert np.allclose(sum(Ps), np.eye(n), atol=TOL_EXACT)


@pytest.mark.parametrize("kind", KINDS)
def test_symmetry_adapted_basis(kind):
    """Orthonormal, complete, and every copy transforms with the same irrep matrices."""
    lat = make(kind, 7)
    nb = Neighborhood(lat)
    G = PointGroup(lat.point_group)
    copies = symmetry_adapted_basis(nb, G)
    U = np.concatenate([c.vectors for c in copies])
    assert U.shape == (nb.n_variables, nb.n_variables)
    assert np.allclose(U @ U.T, np.eye(len(U)), atol=TOL_EXACT)
    irreps = {ir.name: ir for ir in G.irreps}
    for c in copies:
        Dg = irreps[c.irrep].matrices  # D(g) u^m = Σ_l D^Γ_lm(g) u^l
        lhs = np.einsum("gab,mb->gma", nb.rep, c.vectors)
        rhs = np.einsum("glm,la->gma", Dg, c.vectors)
        assert np.allclose(lhs, rhs, atol=TOL_EXACT)


# ---------------------------------------------------------------------------- invariances
def test_global_spin_rotation_and_time_reversal(setup):
    lat, desc = setup
    S = random_spins(lat.n_sites, seed=2)
    F = desc(S)
    Q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    Q = Q * torch.sign(torch.det(Q))  # proper rotation
    assert (desc(S @ Q.T) - F).abs().max() < TOL_EXACT
    assert (desc(-S) - F).abs().max() < TOL_EXACT  # time reversal: the s-d energy is even in S


def test_point_group_rotations_and_mirrors(setup):
    lat, desc = setup
    S = random_spins(lat.n_sites, seed=4)
    F = desc(S)
    for name, R in lat.point_group:
        for centre in (0, 17):
            perm = lat.permutation(R, centre)
            err = (desc(move(S, perm))[perm] - F).abs().max()
            assert err < TOL_EXACT, (name, centre, float(err))


def test_translation_equivariance_and_batch(setup):
    lat, desc = setup
    S = random_spins(lat.n_sites, seed=5, batch=3)
    F = desc(S)
    perm = lat.shifted(2, 5)
    assert (desc(move(S, perm))[:, perm] - F).abs().max() < TOL_EXACT
    assert (desc(S[1]) - F[1]).abs().max() < TOL_EXACT


def gradcheck_descriptor(lat, seed, weight_seed):
    """float64 gradcheck of a random linear functional of the features; returns (descriptor, spins)."""
    desc = Descriptor(lat, cutoff=2.0)
    S = random_spins(lat.n_sites, seed=seed).requires_grad_(True)
    W = torch.randn(2, lat.n_sites, desc.n_features, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(weight_seed))
    assert torch.autograd.gradcheck(lambda s: (desc(s) * W).sum((1, 2)), (S,), eps=1e-6, atol=1e-7, rtol=1e-5)
    return desc, S


def test_float32_and_gradcheck():
    lat = lattice.triangular(5)
    desc, S = gradcheck_descriptor(lat, seed=6, weight_seed=11)
    d32 = Descriptor(lat, cutoff=2.0, dtype=torch.float32)
    S32 = S.detach().float().requires_grad_(True)
    F32 = d32(S32)
    F64 = desc(S.detach())
    assert F32.dtype == torch.float32
    assert ((F32.double() - F64).abs().max() / F64.abs().max()) < TOL_F32
    F32.square().sum().backward()
    assert S32.grad is not None and torch.isfinite(S32.grad).all()


def test_gradcheck_square():
    gradcheck_descriptor(lattice.square(5), seed=7, weight_seed=12)


# ---------------------------------------------------------------------------- discrimination
def test_fm_neel_random_differ():
    lat = lattice.square(8)
    desc = Descriptor(lat)
    c = lat.coords
    fm = torch.zeros(lat.n_sites, 3, dtype=torch.float64)
    fm[:, 2] = 1
    neel = fm * ((-1.0) ** (c[:, 0] + c[:, 1])).unsqueeze(1).double()
    F = [desc(x) for x in (fm, neel, random_spins(lat.n_sites, seed=8))]
    for a in range(3):
        for b in range(a + 1, 3):
            assert (F[a] - F[b]).abs().max(dim=1).values.min() > 0.1
    assert (F[0] - F[0][0]).abs().max() < TOL_EXACT  # uniform states: every site alike


def test_chiral_domains_and_domain_wall():
    lat = lattice.triangular(12)
    desc = Descriptor(lat)
    plus, minus = tetrahedral(lat, +1), tetrahedral(lat, -1)
    chi = (plus[lat.triangles[:, 0]] * torch.linalg.cross(plus[lat.triangles[:, 1]], plus[lat.triangles[:, 2]], dim=-1)).sum(-1)
    assert torch.allclose(chi, torch.full_like(chi, 4 / (3 * math.sqrt(3))), atol=TOL_EXACT)
    Fp = desc(plus)
    # the two chiral domains are related by time reversal (and by a mirror): same features
    assert (desc(minus) - Fp).abs().max() < TOL_EXACT
    # a wall between them is seen at the wall and not deep inside the domains
    x = lat.coords[:, 0]
    wall = torch.where((x >= 3) & (x < 9), minus.T, plus.T).T  # walls at x = 2.5 and x = 8.5
    dF = (desc(wall) - Fp).abs().max(dim=1).values
    assert dF[(x == 2) | (x == 3)].min() > 0.1
    assert dF[x == 6].max() < TOL_EXACT
    # even the time-reversal-odd invariants cannot tell them apart: a mirror maps one onto the other
    odd = Descriptor(lat, time_reversal=False)
    assert odd.n_features > desc.n_features
    assert (odd(minus) - odd(plus)).abs().max() < TOL_EXACT


def test_time_reversal_odd_option():
    """With ``time_reversal=False`` the extra invariants are odd under S → −S, the others even."""
    lat = lattice.triangular(5)
    desc, odd = Descriptor(lat, 2.0), Descriptor(lat, 2.0, time_reversal=False)
    S = random_spins(lat.n_sites, seed=10)
    F, Fm = odd(S), odd(-S)
    even = torch.isclose(F, Fm, atol=TOL_EXACT, rtol=0)
    assert int(even[0].sum()) == desc.n_features
    assert torch.allclose(Fm[:, ~even[0]], -F[:, ~even[0]], atol=TOL_EXACT)


# ---------------------------------------------------------------------------- spec, sizes, errors
def test_spec_roundtrip_other_size():
    small, big = lattice.triangular(8), lattice.triangular(12)
    desc = Descriptor(small)
    spec = json.loads(json.dumps(desc.spec()))
    other = Descriptor.from_spec(spec, big)
    assert other.n_features == desc.n_features and other.cutoff == desc.cutoff
    assert (other(tetrahedral(big))[0] - desc(tetrahedral(small))[0]).abs().max() < TOL_EXACT
    with pytest.raises(ValueError, match="lattice"):
        Descriptor.from_spec(spec, lattice.square(8))


@pytest.mark.parametrize("kind, cutoff, phase_cutoff", [("square", 3.5, 1.5), ("triangular", 3.0, 2.0)])
def test_lean_descriptor_is_a_subset_of_the_full_one(kind, cutoff, phase_cutoff):
    """``phase_cutoff`` drops relative phases of outer copies only: every lean feature is the full
    descriptor's feature of the same name, all power spectra and linear invariants stay, fewer features."""
    lat = make(kind, 8)
    full, lean = Descriptor(lat, cutoff=cutoff), Descriptor(lat, cutoff=cutoff, phase_cutoff=phase_cutoff)
    assert lean.n_features < full.n_features
    cols = [full.feature_names.index(n) for n in lean.feature_names]
    S = random_spins(lat.n_sites, seed=8, batch=2)
    assert (lean(S) - full(S)[..., cols]).abs().max() < TOL_EXACT
    copies = lambda name: [int(x) for x in re.findall(r"\[(\d+)\]", name)]  # noqa: E731
    diagonal = {n for n in full.feature_names if len(set(copies(n))) == 1}  # linear and power spectrum
    assert diagonal <= set(lean.feature_names)
    radii = lean.neighborhood.orbit_radii()
    for n in set(lean.feature_names) - diagonal:  # a kept relative phase involves an inner copy
        r, s_ = copies(n)
        assert min(radii[lean.copies[r].orbit], radii[lean.copies[s_].orbit]) <= phase_cutoff + 1e-9
    spec = json.loads(json.dumps(lean.spec()))
    other = Descriptor.from_spec(spec, make(kind, 9))
    assert other.phase_cutoff == phase_cutoff and other.n_features == lean.n_features


def test_orbit_radii_match_the_sites():
    nb = Neighborhood(lattice.square(10), cutoff=2.3)
    radii = nb.orbit_radii()
    assert len(radii) == len(nb.orbits) and radii.min() == pytest.approx(1.0) and radii.max() == pytest.approx(math.sqrt(5))


def test_bad_input():
    for bad in (0.5, 2.3, 3.0, "x"):
        with pytest.raises(ValueError, match="phase_cutoff must be None or a number in"):
            Descriptor(lattice.square(8), cutoff=2.3, phase_cutoff=bad)
    with pytest.raises(ValueError, match="cutoff"):
        Descriptor(lattice.square(4))  # L must exceed 2·cutoff
    with pytest.raises(ValueError, match="cutoff"):
        Descriptor(lattice.square(12), cutoff=0.5)
    desc = Descriptor(lattice.square(6), cutoff=2.0)
    with pytest.raises(ValueError, match="spins"):
        desc(torch.zeros(35, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="dtype"):
        desc(torch.zeros(36, 3, dtype=torch.float32))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    lat = lattice.triangular(8)
    desc = Descriptor(lat)
    S = random_spins(lat.n_sites, seed=9)
    F = desc(S)
    Fc = desc.to("cuda")(S.cuda())
    assert (Fc.cpu() - F).abs().max() < 1e-10
