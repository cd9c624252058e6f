"""Tests of the training pipeline: split by trajectory, λ schedule, learning, checkpoint/resume."""
import math
import os

import pytest
import torch
from tests.test_nn import ShellBondDescriptor

from sdlib import lattice, random_spins
from sdlib.io import TrajectoryWriter
from sdlib.nn import MLForceField
from sdlib.forcefield import torque
from sdlib.training import (FieldDataset, FMSiteWeights, batch_losses, energy_weight, evaluate, fit_normalization,
                            loss_terms, split_by_content, split_by_trajectory, train,
                            content_keys)

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


def test_split_by_content_is_stable_and_keeps_twins_together():
    pool = random_spins(16, 300, seed=11)
    tr, va = split_by_content(pool, val=0.2, seed=5)
    assert sorted(torch.cat([tr, va]).tolist()) == list(range(300))  # every frame on exactly one side
    assert 0.2 - 0.07 < len(va) / 300 < 0.2 + 0.07  # binomial: sd 0.023
    # a grown pool, reordered, with repeats: old frames keep their side, repeats join their twin's side
    more = random_spins(16, 100, seed=12)
    order = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    grown = torch.cat([more, pool[order], pool[:40]])
    tr2, va2 = split_by_content(grown, val=0.2, seed=5)
    side = torch.zeros(len(grown), dtype=torch.bool)
    side[va2] = True
    old = torch.zeros(300, dtype=torch.bool)
    old[va] = True
    assert torch.equal(side[100:400], old[order]) and torch.equal(side[400:], old[:40])
    # another seed, another split
    assert not torch.equal(split_by_content(pool, val=0.2, seed=6)[1], va)
    # tiny pools still get a frame on each side, even where no hash falls below val
    for m in (2, 3):
        t3, v3 = split_by_content(pool[:m], val=1e-9, seed=5)
        assert len(v3) == 1 and len(t3) == m - 1
    t3, v3 = split_by_content(pool[:3], val=1 - 1e-9, seed=5)
    assert len(t3) == 1 and len(v3) == 2
    with pytest.raises(ValueError, match="val must be a fraction in"):
        split_by_content(pool, val=1.0)
    with pytest.raises(ValueError, match="M >= 2"):
        split_by_content(pool[:1])


def test_content_keys_depend_on_the_frame_alone_and_are_uniform():
    pool = random_spins(16, 400, seed=21)
    keys = content_keys(pool, seed=7)
    order = torch.randperm(400, generator=torch.Generator().manual_seed(1))
    assert torch.equal(content_keys(pool[order], seed=7), keys[order])  # no dependence on order or company
    assert torch.equal(content_keys(pool.to(torch.float32).to(torch.float64)[:1], seed=7),
                       content_keys(pool.to(torch.float32)[:1], seed=7))  # hashed as float64 bytes
    assert not torch.equal(content_keys(pool, seed=8), keys)
    # uniform on [0, 1): Kolmogorov-Smirnov distance of 400 draws, 1 % level 1.63 / sqrt(400)
    x = keys.sort().values
    ks = torch.maximum((torch.arange(1, 401) / 400 - x).abs(), (x - torch.arange(400) / 400).abs()).max()
    assert 0 <= x[0] and x[-1] < 1 and ks < 1.63 / 20
    # the frames train_committee(frames=k) keeps: the k smallest keys, the same for a grown pool where
    # the new frames' keys are larger
    k = 50
    chosen = set(keys.argsort()[:k].tolist())
    more = random_spins(16, 200, seed=22)
    more = more[content_keys(more, seed=7) > keys.sort().values[k - 1]]
    grown = torch.cat([more, pool])
    assert {i - len(more) for i in content_keys(grown, seed=7).argsort()[:k].tolist()} == chosen
    with pytest.raises(ValueError, match=r"\[M, N, 3\]"):
        content_keys(pool[0])


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


def fm_fraction_by_hand(spins, lat):
    """Fraction of FM bonds of every site, by a loop over the neighbour vectors (no lattice tables)."""
    x, y = lat.coords[:, 0].long(), lat.coords[:, 1].long()
    out = torch.zeros(spins.shape[:-1], dtype=spins.dtype)
    for dx, dy in lat.nn_vectors:
        j = lat.index((x + dx) % lat.L, (y + dy) % lat.L)
        out += ((spins * spins[..., j, :]).sum(-1) > 0).to(spins.dtype)
    return out / len(lat.nn_vectors)


def test_fm_site_weights_pick_the_sites_inside_ferromagnetic_clusters():
    lat = lattice.square(6)
    fm = torch.zeros(lat.n_sites, 3, dtype=torch.float64)
    fm[:, 2] = 1.0
    c = int(lat.index(torch.tensor(2), torch.tensor(3)))
    flipped = fm.clone()
    flipped[c, 2] = -1.0  # the flipped site has no FM bond, its 4 neighbours 3 of 4
    w = FMSiteWeights(lat, 5.0)(flipped)
    expect = torch.full((lat.n_sites,), 5.0, dtype=torch.float64)
    expect[c] = 1.0
    assert torch.equal(w, expect)
    x, y = lat.coords[:, 0], lat.coords[:, 1]
    neel = fm * torch.where((x + y) % 2 == 0, 1.0, -1.0)[:, None].to(fm)
    assert torch.equal(FMSiteWeights(lat, 5.0)(neel), torch.ones(lat.n_sites, dtype=torch.float64))
    s = random_spins(lat.n_sites, (3,), seed=4)  # random spins: against the hand count, rotation-invariant
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    by_hand = 1.0 + 2.0 * (fm_fraction_by_hand(s, lat) >= 0.75).to(s.dtype)
    assert torch.equal(FMSiteWeights(lat, 3.0)(s), by_hand) and torch.equal(FMSiteWeights(lat, 3.0)(s @ q.T), by_hand)
    assert 0 < (by_hand > 1).sum() < by_hand.numel()
    with pytest.raises(ValueError, match="weight"):
        FMSiteWeights(lat, 0.5)
    with pytest.raises(ValueError, match="min_fraction"):
        FMSiteWeights(lat, 2.0, min_fraction=0.0)
    with pytest.raises(ValueError, match="sites"):
        FMSiteWeights(lat, 2.0)(random_spins(16, seed=0))


def test_weighted_torque_loss_is_the_weighted_mean_over_sites(files):
    ds = FieldDataset(files[:2])
    ff = make_ff()
    fit_normalization(ff, ds)
    b = ds.batch(torch.arange(5, 17))
    weights = FMSiteWeights(LAT, 4.0)
    out = ff(b["spins"].to(ff.dtype), create_graph=False)
    d2 = (torque(b["spins"], out.fields.double()) - torque(b["spins"], b["fields"])).pow(2).sum(-1)  # [B, N]
    w = 1.0 + 3.0 * (fm_fraction_by_hand(b["spins"], LAT) >= 0.75).double()
    assert 0 < (w > 1).sum() < w.numel()  # both classes in the batch
    lf, le = batch_losses(ff, b, site_weights=weights, create_graph=False)
    assert math.isclose(lf.item(), ((w * d2).sum() / (3 * w.sum())).item(), rel_tol=1e-10)
    plain, le0 = batch_losses(ff, b, create_graph=False)
    assert math.isclose(batch_losses(ff, b, site_weights=FMSiteWeights(LAT, 1.0), create_graph=False)[0].item(),
                        plain.item(), rel_tol=1e-12)
    assert math.isclose(plain.item(), (d2.sum() / (3 * d2.numel())).item(), rel_tol=1e-10) and le.item() == le0.item()


def test_frame_norm_weighs_each_configuration_by_its_inverse_mean_square_torque(files):
    """frame_norm: the batch mean of r̄ · (squared error / r_b) per configuration, r_b the mean square of
    its reference torques (computed here by hand); equal to the plain MSE when every r_b is the same;
    a configuration without torques is refused by name."""
    ds = FieldDataset(files[:2])
    ff = make_ff()
    fit_normalization(ff, ds)
    b = ds.batch(torch.arange(0, 24, 3))  # frames along the tilted trajectories: their torques differ
    out = ff(b["spins"].to(ff.dtype), create_graph=False)
    t_ref = torque(b["spins"], b["fields"])
    d2 = (torque(b["spins"], out.fields.double()) - t_ref).pow(2)  # [B, N, 3]
    r = t_ref.pow(2).mean(dim=(-2, -1))
    assert r.max() > 1.5 * r.min()
    lf, le = batch_losses(ff, b, frame_norm=True, create_graph=False)
    assert math.isclose(lf.item(), (r.mean() * d2.mean(dim=(-2, -1)) / r).mean().item(), rel_tol=1e-10)
    plain, le0 = batch_losses(ff, b, create_graph=False)
    assert not math.isclose(lf.item(), plain.item(), rel_tol=1e-3) and le.item() == le0.item()
    same = {k: (v[:1].expand(4, *v.shape[1:]) if torch.is_tensor(v) and v.dim() else v) for k, v in b.items()}
    assert math.isclose(batch_losses(ff, same, frame_norm=True, create_graph=False)[0].item(),
                        batch_losses(ff, same, create_graph=False)[0].item(), rel_tol=1e-10)
    # with site weights: the weighted mean over the sites of each configuration, then weighted by r̄/r_b
    w = FMSiteWeights(LAT, 4.0)(b["spins"])
    per = (w[..., None] * d2).sum(dim=(-2, -1)) / (3 * w.sum(-1))
    lw, _ = batch_losses(ff, b, site_weights=FMSiteWeights(LAT, 4.0), frame_norm=True, create_graph=False)
    assert math.isclose(lw.item(), (r.mean() * per / r).mean().item(), rel_tol=1e-10)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(b["spins"]).clone()
    ordered = dict(b, spins=up, fields=2.0 * up)  # fields along the spins: no torque
    with pytest.raises(ValueError, match="frame_norm needs configurations with nonzero reference torques"):
        batch_losses(ff, ordered, frame_norm=True, create_graph=False)


def test_weighted_training_checkpoints_its_weights(files, tmp_path):
    """A weighted run resumes only with the same weights; its history is that of a weighted loss."""
    tr, va, _ = split_by_trajectory(files, seed=0)
    train_set, val_set = FieldDataset(tr, stride=3), FieldDataset(va, stride=3)
    kw = dict(epochs=2, batch_size=4, lr=5e-3, progress=False, checkpoint=tmp_path / "w.ckpt")
    hist = train(make_ff(), train_set, val_set, site_weights=FMSiteWeights(LAT, 10.0), max_minutes=1e-9, **kw)
    assert hist["stopped"] == "time"
    with pytest.raises(ValueError, match="other settings"):
        train(make_ff(), train_set, val_set, site_weights=FMSiteWeights(LAT, 2.0), **kw)
    with pytest.raises(ValueError, match="other settings"):
        train(make_ff(), train_set, val_set, **kw)
    done = train(make_ff(), train_set, val_set, site_weights=FMSiteWeights(LAT, 10.0), **kw)
    assert len(done["epoch"]) == 2 and done["train_loss"][0] == hist["train_loss"][0]


def test_gradient_clipping_scales_a_spike_to_the_limit():
    from sdlib.training import CLIP_WARMUP, _clip_gradient

    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    state = {"grad_norms": [], "clipped": 0}
    for k in range(CLIP_WARMUP):  # warm-up: norms 1 ... recorded, none clipped (not even a large one)
        p.grad = torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64) * (100.0 if k == 0 else 0.2)
        _clip_gradient([p], 3.0, state)
    assert state["clipped"] == 0 and p.grad.norm().item() == pytest.approx(1.0)
    p.grad = torch.tensor([0.0, 30.0, 40.0], dtype=torch.float64)  # norm 50 against a median of 1
    _clip_gradient([p], 3.0, state)
    assert state["clipped"] == 1 and p.grad.norm().item() == pytest.approx(3.0)
    assert p.grad[2] / p.grad[1] == pytest.approx(4 / 3)  # the direction is kept
    assert state["grad_norms"][-1] == pytest.approx(3.0)  # the clipped norm is what the limit remembers
    p.grad = torch.tensor([0.0, 0.6, 0.8], dtype=torch.float64)  # below the limit: untouched
    _clip_gradient([p], 3.0, state)
    assert state["clipped"] == 1 and p.grad.norm().item() == pytest.approx(1.0)


def test_training_with_gradient_clipping_resumes_exactly(files, tmp_path):
    tr, va, _ = split_by_trajectory(files, seed=0)
    train_set, val_set = FieldDataset(tr, stride=2), FieldDataset(va, stride=2)
    kw = dict(epochs=3, batch_size=2, lr=5e-3, progress=False, target="field", grad_clip=1.0)
    ref = make_ff()
    h_ref = train(ref, train_set, val_set, **kw)
    assert h_ref["clipped_steps"] > 0  # at 1 x the median about half the steps are clipped
    plain = train(make_ff(), train_set, val_set, **(kw | {"grad_clip": None}))
    assert plain["clipped_steps"] == 0 and plain["train_loss"] != h_ref["train_loss"]
    ckpt = tmp_path / "clip.ckpt"
    train(make_ff(), train_set, val_set, checkpoint=ckpt, max_minutes=1e-9, **kw)
    resumed = make_ff(seed=1)
    h2 = train(resumed, train_set, val_set, checkpoint=ckpt, **kw)
    assert h2["train_loss"] == h_ref["train_loss"] and h2["clipped_steps"] == h_ref["clipped_steps"]
    with pytest.raises(ValueError, match="other settings"):
        train(make_ff(), train_set, val_set, checkpoint=ckpt, **(kw | {"grad_clip": 2.0}))
    with pytest.raises(ValueError, match=r"grad_clip must be None or a number >= 1"):
        train(make_ff(), train_set, val_set, **(kw | {"grad_clip": 0.5}))


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
