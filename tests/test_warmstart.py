"""Warm start of a larger-cutoff network from a trained smaller one (sdlib.warmstart)."""
import pytest
import torch
from tests.test_training import files, make_ff  # noqa: F401  (module fixture of the training tests)

from sdlib import lattice, random_spins
from sdlib.descriptors import Descriptor
from sdlib.nn import MLForceField
from sdlib.training import FieldDataset, split_by_trajectory, train
from sdlib.warmstart import match_features, warm_start

TOL = 1e-12  # fields and energies of the warm-started network vs the old one (float64 round-off)
LAT = lattice.square(8)
PHYS = {"t": 1.0, "J": 6.0, "filling": 0.485, "kT": 0.05, "mu_range": [-7.0, -5.0], "L": 8}

pytestmark = pytest.mark.usefixtures("one_thread")


def scrambled(ff, seed):
    """Random weights *and* a random feature normalisation, so a wrong column map cannot pass."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ff.net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
        net = ff.net
        net.feature_mean.copy_(torch.randn(net.n_features, generator=gen, dtype=torch.float64) * 0.1)
        net.feature_std.copy_(torch.rand(net.n_features, generator=gen, dtype=torch.float64) + 0.5)
        net.energy_shift.fill_(-5.9)
        net.energy_scale.fill_(0.07)
        if net.mu_input and net.levels:
            net.set_spectrum(-1.0, 9.0, 0.05)
        elif net.mu_input:
            net.mu_mean.fill_(-6.0)
            net.mu_std.fill_(0.4)
            net.number_shift.fill_(0.97)
    return ff


@pytest.mark.parametrize("mu_input, hidden, levels", [(False, (8, 8), 0), (True, (8, 8), 0), (True, (13, 11), 0),
                                                     (True, (8, 8), 4), (True, (13, 11), 4)])
def test_warm_started_network_computes_the_old_one(mu_input, hidden, levels):
    """Also a wider network: the added units change nothing until training moves them. Also the
    level head (sdlib.levelhead), compared at fixed μ (random levels need not reach N_e)."""
    phys = PHYS if mu_input else {"t": 1.0, "J": 6.0, "filling": 0.485, "kT": 0.0, "L": 8}
    old = scrambled(MLForceField(Descriptor(LAT, cutoff=2.3), hidden=(8, 8), physics=phys, mu_input=mu_input,
                                 levels=levels), 1)
    new = scrambled(MLForceField(Descriptor(LAT, cutoff=3.5, phase_cutoff=2.3), hidden=hidden, physics=phys,
                                 mu_input=mu_input, levels=levels), 2)
    spins = random_spins(LAT.n_sites, (3,), seed=7)
    before = new.grand(spins, -6.2) if mu_input else new(spins)  # (a random wide one need not reach N_e)
    k = warm_start(new, old)
    assert len(set(k.tolist())) == old.descriptor.n_features < new.descriptor.n_features
    a, b = (old.grand(spins, -6.2), new.grand(spins, -6.2)) if levels else (old(spins), new(spins))
    ref = old.grand(spins, -6.2) if mu_input else a
    assert (ref.fields - before.fields).abs().max() > 1e-3  # the two networks differed before
    assert torch.allclose(b.energy, a.energy, rtol=0, atol=TOL)
    assert torch.allclose(b.fields, a.fields, rtol=0, atol=TOL)
    if mu_input:
        g_old, g_new = old.grand(spins, -6.2), new.grand(spins, -6.2)
        assert torch.allclose(g_new.number, g_old.number, rtol=0, atol=TOL)
    if hidden != (8, 8):  # the added units differ from each other (random incoming weights): trainable
        added = new.net.mlp[0].weight[8:]
        assert torch.cdist(added, added).triu(1)[torch.ones(5, 5).triu(1).bool()].min() > 1e-3


def test_matched_columns_hold_the_same_features():
    old, new = Descriptor(LAT, cutoff=2.3), Descriptor(LAT, cutoff=3.5, phase_cutoff=2.3)
    k = match_features(old, new)
    spins = random_spins(LAT.n_sites, (2,), seed=11)  # other configurations than the matching used
    assert torch.allclose(new(spins)[..., k], old(spins), rtol=0, atol=1e-12)


def test_descriptor_that_lacks_features_is_refused():
    old = MLForceField(Descriptor(LAT, cutoff=2.3), hidden=(8, 8), physics=PHYS, mu_input=True)
    lean = MLForceField(Descriptor(LAT, cutoff=3.5, phase_cutoff=1.0), hidden=(8, 8), physics=PHYS, mu_input=True)
    with pytest.raises(ValueError, match="not features of the new one.*phase_cutoff 1.0"):
        warm_start(lean, old)


@pytest.mark.parametrize("change", [{"hidden": (8, 4)}, {"hidden": (8, 8, 8)}, {"activation": "tanh"},
                                    {"mu_input": False}])
def test_other_network_shape_is_refused(change):
    old = MLForceField(Descriptor(LAT, cutoff=2.3), hidden=(8, 8), physics=PHYS, mu_input=True)
    kw = {"hidden": (8, 8), "activation": "silu", "mu_input": True} | change
    phys = PHYS if kw["mu_input"] else {"t": 1.0, "J": 6.0, "filling": 0.485, "kT": 0.0}
    new = MLForceField(Descriptor(LAT, cutoff=3.5, phase_cutoff=2.3), physics=phys, **kw)
    with pytest.raises(ValueError, match=f"{next(iter(change))} differs"):
        warm_start(new, old)


def test_other_lattice_is_refused():
    old = MLForceField(Descriptor(lattice.square(6), cutoff=2.3), hidden=(8, 8), physics=PHYS, mu_input=True)
    new = MLForceField(Descriptor(LAT, cutoff=3.5, phase_cutoff=2.3), hidden=(8, 8), physics=PHYS, mu_input=True)
    with pytest.raises(ValueError, match="different lattices"):
        warm_start(new, old)


def test_keep_initial_never_returns_worse_than_the_start(files):  # noqa: F811
    """A learning rate that wrecks the network every epoch: with keep_initial the starting weights
    are kept (best epoch -1); without it the best of the wrecked epochs is returned."""
    tr, va, _ = split_by_trajectory(files, val=0.2, test=0.2, seed=0)
    train_set, val_set = FieldDataset(tr), FieldDataset(va)
    good = make_ff()
    train(good, train_set, val_set, epochs=30, batch_size=6, lr=1e-2, lr_final=5e-4, progress=False, patience=30)
    start = {k: v.clone() for k, v in good.net.state_dict().items()}
    for keep in (True, False):
        good.net.load_state_dict(start)
        hist = train(good, train_set, val_set, epochs=3, batch_size=6, lr=3.0, lr_final=3.0, progress=False,
                     energy_start=0, energy_ramp=1, normalize=False, keep_initial=keep)
        kept = all(torch.equal(v, start[k]) for k, v in good.net.state_dict().items())
        assert kept == keep and (hist["best_epoch"] == -1) == keep
        assert min(hist["val_field"]) > hist["best_val"] if keep else hist["best_val"] == min(hist["val_field"])
