"""The descriptor's shared-table evaluation equals the direct construction of its features.

``Descriptor`` computes every product of spins once per site and gathers it into the
neighbourhoods (``sdlib/descriptors/module.py``), and forms the Gram entries in blocks of sites with
a hand-written backward pass. Here the features, their gradients and the fields of a network on
them are compared with the direct construction (gather the spins of every neighbourhood, form each
bond and chirality, project, multiply), in float64, to ``TOL_SAME``; trained models rely on this.
"""
import pytest
import torch

import sdlib.descriptors.module as module
from sdlib import MLForceField, lattice, random_spins
from sdlib.descriptors import Descriptor
from sdlib.descriptors.invariants import invariant_pairs

TOL_SAME = 1e-12  # float64, absolute, features of order 1-10

pytestmark = pytest.mark.usefixtures("one_thread")


def direct_features(desc, lat, spins):
    """Features by the definition: variables of each neighbourhood, projection, Gram entries."""
    nb = desc.neighborhood
    S = spins[..., torch.from_numpy(nb.site_index(lat)), :]  # [..., N, K, 3]
    bj, bk = torch.from_numpy(nb.bonds).T
    tj, tk, tl = torch.from_numpy(nb.triangles).T
    bonds = (S[..., bj, :] * S[..., bk, :]).sum(-1)
    chi = (S[..., tj, :] * torch.linalg.cross(S[..., tk, :], S[..., tl, :], dim=-1)).sum(-1)
    v = torch.cat([bonds, chi], dim=-1)
    basis = torch.zeros(len(desc.copies), 2, nb.n_variables, dtype=torch.float64)
    for r, c in enumerate(desc.copies):
        basis[r, : c.dim] = torch.from_numpy(c.vectors)
    f = torch.einsum("...a,rma->...rm", v, basis)
    linear, pairs = invariant_pairs(desc.copies, desc.time_reversal)
    r, s = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    return torch.cat([f[..., linear, 0], (f[..., r, :] * f[..., s, :]).sum(-1)], dim=-1)


@pytest.fixture(params=[False, True], ids=["one-block", "many-blocks"])
def blocks(request, monkeypatch):
    if request.param:  # blocks of 16 sites: exercises the block boundaries on small lattices
        monkeypatch.setattr(module, "BLOCK_ELEMENTS", 1)


@pytest.mark.parametrize("kind", ["square", "triangular"])
@pytest.mark.parametrize("time_reversal", [True, False])
def test_features_and_gradients_equal_direct_construction(kind, time_reversal, blocks):
    lat = getattr(lattice, kind)(9)
    desc = Descriptor(lat, time_reversal=time_reversal)
    S = random_spins(lat.n_sites, (2,), seed=1).requires_grad_(True)
    fast, ref = desc(S), direct_features(desc, lat, S)
    assert fast.shape == ref.shape == (2, lat.n_sites, desc.n_features)
    assert (fast - ref).abs().max() < TOL_SAME
    assert (desc(S[1]) - ref[1]).abs().max() < TOL_SAME
    w = torch.randn(desc.n_features, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (g_fast,) = torch.autograd.grad((torch.tanh(fast) @ w).sum(), S)
    (g_ref,) = torch.autograd.grad((torch.tanh(ref) @ w).sum(), S)
    assert (g_fast - g_ref).abs().max() < TOL_SAME


def test_double_backward(blocks):
    """Second derivatives (training on fields) through the hand-written Gram backward pass."""
    lat = lattice.triangular(5)
    desc = Descriptor(lat)
    S = random_spins(lat.n_sites, seed=3).requires_grad_(True)
    w = torch.randn(desc.n_features, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert torch.autograd.gradgradcheck(lambda x: torch.tanh(desc(x)) @ w, (S,))


def test_network_fields_equal_direct_construction():
    lat = lattice.square(10)
    torch.manual_seed(5)
    ff = MLForceField(Descriptor(lat), hidden=(16, 16), physics={"t": 1.0, "J": 6.0, "filling": 0.485, "kT": 0.0})
    S = random_spins(lat.n_sites, seed=6)
    out = ff(S)
    x = S.clone().requires_grad_(True)
    energy = ff.net(direct_features(ff.descriptor, lat, x)).sum()
    (grad,) = torch.autograd.grad(energy, x)
    assert abs(out.energy - energy) < TOL_SAME * lat.n_sites
    assert (out.fields + grad).abs().max() < TOL_SAME
