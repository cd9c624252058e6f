"""The inference path of MLForceField without autograd (sdlib.fastpath): equal to the autograd path
to round-off on both lattices, batched and unbatched, at fixed μ and fixed filling, with full and
lean descriptors; its fields are −∂E/∂S by finite differences; float32 stays close to float64;
training (create_graph=True) still goes through autograd."""
import pytest
import torch

from sdlib import lattice, random_spins
from sdlib.descriptors import Descriptor
from sdlib.forcefield import FiniteDifferenceFields
from sdlib.nn import MLForceField

TOL = 1e-12  # fast path against autograd, float64, relative to the largest field / energy
TOL_FD = 1e-6
TOL_F32 = 1e-5

pytestmark = pytest.mark.usefixtures("one_thread")


def random_model(kind, L=8, mu_input=False, phase_cutoff=None, cutoff=None, seed=0, **kw):
    """A model with random weights and non-trivial normalisation (every buffer enters the result)."""
    torch.manual_seed(seed)
    desc = Descriptor(getattr(lattice, kind)(L), cutoff=cutoff, phase_cutoff=phase_cutoff)
    physics = {"t": 1.0, "J": 2.0, "mu": 0.0, "kT": 0.1} | ({"mu_range": [-1.0, 1.0]} if mu_input else {})
    ff = MLForceField(desc, hidden=(16, 12), physics=physics, mu_input=mu_input, **kw)
    with torch.no_grad():
        for p in ff.net.parameters():
            p.normal_(0.0, 0.3)
        ff.net.feature_mean.normal_()
        ff.net.feature_std.uniform_(0.5, 2.0)
        ff.net.energy_scale.fill_(1.7)
        ff.net.energy_shift.fill_(-0.3)
        if mu_input:
            ff.net.mu_mean.fill_(0.2)
            ff.net.mu_std.fill_(0.7)
            ff.net.number_shift.fill_(0.9)
    return ff


def both(ff, call):
    """``call(ff)`` by the fast path and by autograd."""
    ff.fast = True
    fast = call(ff)
    ff.fast = False
    slow = call(ff)
    ff.fast = True
    return fast, slow


def assert_same(fast, slow):
    for key in ("energy", "fields", "number", "mu"):
        a, b = getattr(fast, key), getattr(slow, key)
        assert (a is None) == (b is None), key
        if a is not None:
            assert a.shape == b.shape and a.dtype == b.dtype, key
            scale = b.abs().max().clamp_min(1.0)
            assert (a - b).abs().max() <= TOL * scale, (key, (a - b).abs().max().item())


@pytest.mark.parametrize("kind", ["square", "triangular"])
@pytest.mark.parametrize("lean", [False, True])
def test_fast_path_equals_autograd(kind, lean):
    ff = random_model(kind, cutoff=2.3 if lean else None, phase_cutoff=1.5 if lean else None)
    spins = random_spins(ff.n_sites, batch=3, seed=1)
    assert_same(*both(ff, lambda m: m(spins)))
    assert_same(*both(ff, lambda m: m(spins[1])))
    one, _ = both(ff, lambda m: m(spins[1]))
    assert torch.equal(one.fields, ff(spins).fields[1])  # a configuration of a batch = the same alone


@pytest.mark.parametrize("kind", ["square", "triangular"])
def test_fast_path_equals_autograd_at_fixed_mu(kind):
    ff = random_model(kind, mu_input=True)
    spins = random_spins(ff.n_sites, batch=3, seed=2)
    mu = torch.tensor([-0.5, 0.1, 0.7], dtype=torch.float64)
    assert_same(*both(ff, lambda m: m.grand(spins, mu)))
    assert_same(*both(ff, lambda m: m.grand(spins[0], 0.3)))
    assert_same(*both(ff, lambda m: m(spins)))  # physics["mu"]


def test_fast_path_equals_autograd_at_fixed_filling():
    ff = MLForceField.pretrained("square-double-exchange", lattice.square(8))
    spins = random_spins(ff.n_sites, batch=2, seed=3)
    fast, slow = both(ff, lambda m: m(spins))
    assert_same(fast, slow)
    assert fast.mu is not None and torch.allclose(fast.number, torch.full_like(fast.number, ff.n_electrons), atol=1e-6)
    assert_same(*both(ff, lambda m: m(spins[0])))


@pytest.mark.parametrize("mu_input", [False, True])
def test_blocks_of_sites_change_nothing(monkeypatch, mu_input):
    """The sites are processed in blocks (cache-sized on the CPU, memory-bounded on a GPU): many
    small blocks give the result of one block, to round-off."""
    import sdlib.fastpath as fastpath

    ff = random_model("triangular", mu_input=mu_input, seed=9)
    spins = random_spins(ff.n_sites, batch=2, seed=10)
    call = (lambda: ff.grand(spins, torch.tensor([-0.2, 0.4], dtype=torch.float64))) if mu_input else (lambda: ff(spins))
    monkeypatch.setattr(fastpath, "BLOCK_ELEMENTS", 1 << 30)
    one = call()
    monkeypatch.setattr(fastpath, "BLOCK_ELEMENTS", 1)  # blocks of 32 sites: two per 8 x 8 lattice
    assert len(fastpath.FastState(ff.descriptor, spins)._blocks()) == 2
    assert_same(call(), one)


def test_blocks_of_sites_in_the_number_pass_change_nothing(monkeypatch):
    """N(μ) of the μ* solve runs over the sites in cache-sized blocks on the CPU: three blocks give the
    one-block result and the N of the backward pass (the μ-derivative of Ω by the other route)."""
    import sdlib.nn as nn_module
    from sdlib.fastpath import FastState

    ff = random_model("square", L=12, mu_input=True, seed=11)
    spins = random_spins(ff.n_sites, batch=2, seed=12)
    mu = torch.tensor([-0.3, 0.5], dtype=torch.float64)
    pre = FastState(ff.descriptor, spins).first_layer(ff.net)
    monkeypatch.setattr(nn_module, "NUMBER_BLOCK", 1 << 30)
    one = ff.net.number_at_first_layer(pre)(mu)
    monkeypatch.setattr(nn_module, "NUMBER_BLOCK", 1)  # blocks of 64 sites: three on 12 x 12
    many = ff.net.number_at_first_layer(pre)(mu)
    ref = ff.grand(spins, mu).number
    assert torch.allclose(many, one, rtol=TOL, atol=0) and torch.allclose(many, ref, rtol=TOL, atol=0)
    assert not torch.allclose(many, ff.net.number_at_first_layer(pre)(mu + 0.1), rtol=1e-6, atol=0)


def test_float32_number_resolves_changes_below_its_own_rounding():
    """A float32 network's N(μ) is summed in float64: a change of N smaller than half an ulp of N in
    float32 (what a μ step inside a gap of the spectrum gives) is resolved to 5 % of the float64
    network's change, not rounded to 0 or to an ulp (which stalled the μ* search of late,
    phase-separated textures)."""
    import copy

    ff = random_model("square", mu_input=True, seed=3)
    ff32 = copy.deepcopy(ff).to(torch.float32)
    pre = torch.randn(2, 40000, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    n64, n32 = ff.net.number_at_first_layer(pre), ff32.net.number_at_first_layer(pre.float())
    mu, dmu = torch.tensor([-0.2, 0.3], dtype=torch.float64), 2.0 ** -18
    d64 = n64(mu + dmu) - n64(mu)
    d32 = n32((mu + dmu).float()) - n32(mu.float())
    half_ulp = 0.5 * torch.finfo(torch.float32).eps * n64(mu).abs()
    assert n32(mu.float()).dtype == torch.float64
    assert (d64.abs() < half_ulp).all() and (d64.abs() > 0.05 * half_ulp).all()  # the test means something
    assert torch.allclose(d32, d64, rtol=0.05, atol=0)


@pytest.mark.parametrize("kind", ["square", "triangular"])
def test_fast_fields_are_minus_the_energy_gradient(kind):
    ff = random_model(kind, check_norm=False, seed=4)
    s = random_spins(ff.n_sites, seed=5)
    out = ff(s)
    ref = FiniteDifferenceFields(ff, h=1e-5, mode="cartesian", chunk=512)(s)
    assert torch.allclose(out.fields, ref.fields, rtol=0, atol=TOL_FD * out.fields.abs().max().item())


@pytest.mark.parametrize("name, kind", [("square-double-exchange", "square"), ("triangular-tetrahedral", "triangular")])
def test_fast_float32_is_close_to_float64(name, kind):
    ff64 = MLForceField.pretrained(name, getattr(lattice, kind)(16))
    ff32 = MLForceField.pretrained(name, getattr(lattice, kind)(16), dtype=torch.float32)
    s = random_spins(ff64.n_sites, batch=2, seed=6)
    h64, h32 = ff64(s).fields, ff32(s.float()).fields.double()
    assert (h32 - h64).norm() / h64.norm() < TOL_F32


def test_training_keeps_the_graph():
    ff = random_model("square", seed=7)
    s = random_spins(ff.n_sites, seed=8)
    out = ff(s, create_graph=True)  # the double-backward path of training
    assert out.fields.requires_grad
    loss = out.fields.pow(2).sum()
    loss.backward()
    w = ff.net.mlp[0].weight.grad  # the fields depend on every weight but the output bias
    assert w is not None and torch.isfinite(w).all() and w.abs().max() > 0
    assert torch.allclose(out.fields.detach(), ff(s).fields, rtol=0, atol=TOL * out.fields.abs().max().item())
