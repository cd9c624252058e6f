"""Tests of the training pipeline: split by trajectory, λ schedule, learning, checkpoint/resume."""
import math
import os

import pytest
import torch
from tests.test_nn import ShellBondDescriptor

from sdlib import lattice, random_spins
from sdlib.io import TrajectoryWriter
from sdlib.nn import MLForceField
from sdlib.training import (FieldDataset, energy_weight, evaluate, fit_normalization, loss_terms,
                            split_by_trajectory, train)

LEARN_FACTOR = 10.0  # validation loss must fall at least this much
PHYS = {"t": 1.0, "J": 1.0, "mu": 0.0, "kT": 0.0}
LAT = lattice.square(4)


pytestmark = pytest.mark.usefixtures("one_thread")


def teacher(spins):
    """E = -Σ_<ij> S_i·S_j + (1/8) Σ_i b_i², b_i = Σ_{j∈nn(i)} S_i·S_j; H = -∂E/∂S by autograd."""
    s = spins.detach().requires_grad_(True)
    nb = LAT.neighbors
    b = (s[..., :, None, :] * s[..., nb, :]).sum((-1, -2))
    e = -0.5 * b.sum(-1) + 0.125 * (b**2).sum(-1)
    (g,) = torch.autograd.grad(e.sum(), s)
    return e.detach(), -g


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("traj")
    paths = []
    for k in range(6):
        s = random_spins(LAT.n_sites, (12,), seed=100 + k)
        s = s + torch.linspace(0, 2.5, 12)[:, None, None] * torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        s = s / s.norm(dim=-1, keepdim=True)  # from disordered to nearly ferromagnetic
        e, h = teacher(s)
        path = os.path.join(d, f"traj{k}.h5")
        with TrajectoryWriter(path, LAT.n_sites, {"seed": 100 + k}) as w:
            for t in range(12):
                w.append(t, 0.1 * t, s[t], h[t], e[t])
        paths.append(path)
    return paths


def make_ff(seed=0):
    torch.manual_seed(seed)
    return MLForceField(ShellBondDescriptor(LAT), hidden=(16, 16), physics=PHYS | {"L": 4})


def test_split_by_trajectory_no_leakage(files):
    tr, va, te = split_by_trajectory(files, val=0.2, test=0.2, seed=3)
    assert sorted(tr + va + te) == sorted(files) and va and te
    assert not (set(tr) & set(va) or set(tr) & set(te) or set(va) & set(te))
    sets = [FieldDataset(p) for p in (tr, va, te)]
    frames = [{tuple(s.flatten()[:6].tolist()) for s in ds.spins} for ds in sets]
    assert not (frames[0] & frames[1] or frames[0] & frames[2] or frames[1] & frames[2])
    assert sum(len(ds) for ds in sets) == 12 * len(files)
    assert split_by_trajectory(files, seed=3) == split_by_trajectory(list(reversed(files)), seed=3)
    with pytest.raises(ValueError, match="too few"):
        split_by_trajectory(files[:2])


def test_energy_weight_schedule():
    lam = [energy_weight(e, 0.5, start=4, ramp=3) for e in range(10)]
    assert lam[:4] == [0.0] * 4
    assert all(a <= b for a, b in zip(lam, lam[1:])) and lam[-1] == 0.5 and lam[5] < 0.5


def test_training_lowers_validation_loss(files):
    tr, va, _ = split_by_trajectory(files, val=0.2, test=0.2, seed=0)
    train_set, val_set = FieldDataset(tr), FieldDataset(va)
    ff = make_ff()
    fit_normalization(ff, train_set)
    s, h, e = val_set[:]
    before = loss_terms(ff, s, h, e, create_graph=False)[0].item()
    hist = train(ff, train_set, val_set, epochs=40, batch_size=6, lr=1e-2, lr_final=5e-4, progress=False, patience=40)
    after = loss_terms(ff, s, h, e, create_graph=False)[0].item()
    assert after <= before / LEARN_FACTOR, (before, after)
    assert math.isclose(after, hist["best_val"], rel_tol=1e-9)
    assert len(hist["train_loss"]) == len(hist["val_field"]) == hist["epoch"][-1] + 1
    assert hist["energy_weight"][0] == 0 and hist["energy_weight"][-1] > 0
    err = evaluate(ff, val_set)
    assert err["torque_rel"] < 1 / math.sqrt(LEARN_FACTOR)


def test_early_stopping_keeps_weights_trained_with_the_energy_term(files):
    """The kept epoch is one at which λ had reached its final value, even when an earlier one
    validated better: here the validation fields are reversed, so the validation loss grows as
    the network learns and the best epoch by validation alone would be the first."""
    tr, va, _ = split_by_trajectory(files, val=0.2, test=0.2, seed=0)
    val_set = FieldDataset(va)
    val_set.fields = -val_set.fields
    hist = train(make_ff(), FieldDataset(tr), val_set, epochs=12, batch_size=6, lr=1e-2, lr_final=5e-4,
                 energy_start=4, energy_ramp=3, patience=2, progress=False)
    assert hist["val_field"][0] < min(hist["val_field"][6:])  # validation alone would keep epoch 0
    assert hist["best_epoch"] == 6 and hist["energy_weight"][6] == hist["energy_weight"][-1] > 0
    assert hist["stopped"] == "early" and len(hist["epoch"]) == 9


def test_checkpoint_resume_is_exact(files, tmp_path):
    tr, va, _ = split_by_trajectory(files, seed=0)
    train_set, val_set = FieldDataset(tr, stride=2), FieldDataset(va, stride=2)
    kw = dict(epochs=4, batch_size=4, lr=5e-3, progress=False, target="field")
    ref = make_ff()
    h_ref = train(ref, train_set, val_set, **kw)
    ckpt = tmp_path / "run.ckpt"
    ff = make_ff()
    h1 = train(ff, train_set, val_set, checkpoint=ckpt, max_minutes=1e-9, **kw)  # stops after one epoch
    assert h1["stopped"] == "time" and len(h1["epoch"]) == 1 and ckpt.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]  # atomic write left no temporary file
    resumed = make_ff(seed=1)  # other initial weights: the checkpoint must overwrite them
    h2 = train(resumed, train_set, val_set, checkpoint=ckpt, **kw)
    assert h2["val_field"] == h_ref["val_field"] and h2["train_loss"] == h_ref["train_loss"]
    for a, b in zip(resumed.net.state_dict().values(), ref.net.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="other settings"):
        train(make_ff(), train_set, val_set, checkpoint=ckpt, **(kw | {"lr": 1e-3}))
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint"):
        train(make_ff(), train_set, val_set, checkpoint=ckpt, **kw)


def test_bad_arguments(files):
    ds = FieldDataset(files[:1])
    with pytest.raises(ValueError, match="target"):
        train(make_ff(), ds, ds, target="force", progress=False)
    with pytest.raises(ValueError, match="epochs"):
        train(make_ff(), ds, ds, epochs=0, progress=False)
    with pytest.raises(ValueError, match="stride"):
        FieldDataset(files, stride=0)
    with pytest.raises(ValueError, match="paths"):
        FieldDataset([])
