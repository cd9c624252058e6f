"""A committee of networks trained on the labelled frames, and its error on held-out frames.

Member m of a committee is an ``MLForceField`` with μ as input (``mu_input=True``: trained on the
grand-canonical labels, used at the recipe's filling or μ) on the recipe's descriptor, trained by
``sdlib.training.train`` with seed m on its own split of the frames (about a fraction ``val`` held
back for early stopping; ``sdlib.training.split_by_content``: a frame's side is fixed by its spins
and m, so a training continued on a grown pool validates on frames that a start trained by the same
rule never saw, and a configuration labelled twice never sits on both sides). Different seeds and
splits make the members agree where the data decide the torques and disagree where they do not
(``sdlib.datagen.select``). Members are saved
as ``<dir>/member<m>.{safetensors,json}``; a saved member is loaded instead of retrained, and
training checkpoints every epoch, so a killed committee run resumes.
"""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import torch

from ..committee import calibration, torque_spread_of
from ..descriptors import Descriptor
from ..forcefield import torque
from ..nn import MLForceField
from ..training import FieldDataset, FMSiteWeights, GrandDataset, content_keys, fit_normalization, split_by_content, train
from ..warmstart import warm_start
from .label import default_device

__all__ = ["TRAIN", "WARM", "grand_dataset", "label_names", "train_committee", "heldout_errors"]

# optimiser settings of a committee member (float32 training; ``train_committee(..., **overrides)``)
TRAIN = dict(epochs=30, batch_size=4, lr=2e-3, lr_final=1e-4, target="torque", energy_weight_final=1.0,
             energy_start=1, energy_ramp=2, patience=10, max_minutes=None, fm_weight=1.0, grad_clip=None,
             frame_norm=False)
# fm_weight: loss weight of the sites inside FM clusters (training.FMSiteWeights; 1: all sites equal)
# grad_clip: None, or clip rare gradient spikes at that many times the median norm (training.train)
# frame_norm: weight each configuration by the inverse mean square of its torques (training.train)
# a warm start (init_from) trains gently: at lr 2e-3 the first steps lose what the start knew
# (measured on 30 x 30 square frames, T_e = 0.05: no epoch beat the start on validation)
WARM = dict(lr=2e-4, lr_final=2e-5)
CALIBRATION_BINS = 10  # bins of equal site count for the spread-vs-error calibration of heldout_errors
FRAMES_SEED = 7  # the hash salt of train_committee(frames=...)
MU_WINDOW = 0.8  # canonical recipes: each frame trains at the grid points within this of its own μ*


def grand_dataset(recipe, paths) -> GrandDataset:
    """The label files as one ``GrandDataset``; at fixed filling each frame keeps the μ near its μ*."""
    if recipe.n_electrons is None:
        return GrandDataset(paths)
    return GrandDataset(paths, n_electrons=recipe.n_electrons, window=MU_WINDOW)


def label_names(paths) -> list[str]:
    """The label files ``paths`` as the provenance records them: relative to the folder that holds
    all their labelling runs (``<run>/labels/c*.h5``), e.g. ``round0/labels/c00003.h5``, so that
    chunks of two runs (``c00000.h5`` of each) stay apart."""
    paths = [Path(p).resolve() for p in paths]
    if not paths:
        return []
    top = Path(os.path.commonpath([p.parent.parent for p in paths]))
    return [p.relative_to(top).as_posix() for p in paths]


def _subset(ds: GrandDataset, idx: torch.Tensor, device) -> GrandDataset:
    """Frames ``idx`` of ``ds`` (labels moved to ``device``; the μ choice mask stays on the CPU)."""
    sub = copy.copy(ds)
    for key in ("spins", "energy", "fields", "number"):
        setattr(sub, key, getattr(ds, key)[idx].to(device))
    sub.mu = ds.mu.to(device)
    sub.source, sub.allowed = ds.source[idx], ds.allowed[idx]
    sub.mu_star = None if ds.mu_star is None else ds.mu_star[idx]
    return sub


def _member(recipe, device) -> MLForceField:
    desc = Descriptor(recipe.lattice(), cutoff=recipe.cutoff, phase_cutoff=recipe.phase_cutoff)
    return MLForceField(desc, hidden=recipe.hidden, physics=recipe.physics(), mu_input=True,
                        levels=recipe.levels).to(device)


def train_committee(recipe, paths, out_dir, *, val: float = 0.15, init_from=None, members=None, device=None,
                    frames: int | None = None, log=print, **overrides) -> list:
    """Train (or load) ``recipe.committee`` members on the label files ``paths``; returns them in float32.

    ``init_from``: a saved ``MLForceField`` (path, or "pretrained" for the shipped model of the
    recipe's lattice) every member starts as (``sdlib.warmstart``: same depth, layers at least as
    wide, its features among the recipe's); without it members start from random weights, and a μ-input network then
    needs many epochs before its N(μ) reaches N_e. ``overrides`` replace entries of ``TRAIN``
    (e.g. ``epochs``, ``max_minutes`` per member). ``members``: which member numbers to train
    (default all ``recipe.committee``; ``[0]`` is the fixed small network alone). ``frames``: train on
    that many frames only: those of smallest ``content_keys`` (seed ``FRAMES_SEED``), a uniform random
    choice that depends only on the frames themselves (the same for every member, every call and any
    order of ``paths``; a frame of a grown pool that was chosen before stays chosen unless frames of
    smaller key joined).
    """
    cfg = TRAIN | (WARM if init_from is not None else {}) | overrides
    unknown = set(overrides) - set(TRAIN)
    if unknown:
        raise ValueError(f"unknown training settings {sorted(unknown)}; known: {sorted(TRAIN)}")
    try:
        weights = None if cfg["fm_weight"] == 1 else FMSiteWeights(recipe.lattice(), cfg["fm_weight"])
    except ValueError:
        raise ValueError(f"fm_weight must be a number in [1, 1e4] (1: all sites equal), got {cfg['fm_weight']!r}") from None
    device = default_device(device)
    os.makedirs(out_dir, exist_ok=True)
    ds = grand_dataset(recipe, paths)
    if frames is not None:
        if not (isinstance(frames, int) and 3 <= frames <= len(ds)):
            raise ValueError(f"frames must be an integer in [3, {len(ds)}] (the labelled frames), got {frames!r}")
        ds = _subset(ds, content_keys(ds.spins, FRAMES_SEED).argsort()[:frames].sort().values, "cpu")
    if len(ds) < 3:
        raise ValueError(f"a committee needs at least 3 labelled frames, got {len(ds)}")
    committee = []
    for m in (range(recipe.committee) if members is None else members):
        stem = Path(out_dir) / f"member{m}"
        if stem.with_suffix(".json").exists():
            committee.append(MLForceField.load(stem, dtype=torch.float32).to(device))
            continue
        idx_tr, idx_va = split_by_content(ds.spins, val, seed=1000 + m)
        tr, va = _subset(ds, idx_tr, device), _subset(ds, idx_va, device)
        torch.manual_seed(m)
        ff = _member(recipe, "cpu")
        warm = {}
        if init_from is not None:  # on the CPU (feature matching probes CPU spins), then to the device
            fit_normalization(ff, _subset(ds, idx_tr, "cpu"))
            warm_start(ff, _load_start(recipe, init_from))
            warm = {"normalize": False, "keep_initial": True, "energy_start": 0, "energy_ramp": 1}
        ff = ff.to(device=device, dtype=torch.float32)
        ckpt = stem.with_suffix(".ckpt")
        run = {k: v for k, v in (cfg | warm).items() if k != "fm_weight"}
        hist = train(ff, tr, va, seed=m, checkpoint=ckpt, progress=False, site_weights=weights, **run)
        ff.provenance = {"recipe": recipe.to_dict(), "committee_member": m, "training": cfg | warm,
                         "init_from": None if init_from is None else str(init_from),
                         "frames": {"train": len(tr), "val": len(va)}, "files": label_names(ds.paths),
                         "best_epoch": hist["best_epoch"], "stopped": hist["stopped"], "wall_s": round(hist["wall_s"], 1)}
        ff.save(stem)
        ckpt.unlink(missing_ok=True)
        log(f"{stem}: {len(hist['epoch'])} epochs ({hist['stopped']}), {hist['wall_s']:.0f} s")
        committee.append(ff)
    return committee


def _load_start(recipe, init_from) -> MLForceField:
    if init_from == "pretrained":
        name = {"square": "square-double-exchange", "triangular": "triangular-tetrahedral"}[recipe.kind]
        old = MLForceField.pretrained(name, lattice=recipe.lattice())
    else:
        old = MLForceField.load(init_from, lattice=recipe.lattice())
    for key in ("t", "J", "filling", "mu"):
        if old.physics.get(key) != recipe.physics().get(key):
            raise ValueError(f"init_from {init_from}: trained for {key} = {old.physics.get(key)}, the recipe has "
                             f"{recipe.physics().get(key)}")
    return old


@torch.no_grad()
def heldout_errors(committee, path, batch: int = 4) -> dict:
    """Relative torque errors ‖T_ML − T_ref‖/‖T_ref‖ on the held-out trajectory file ``path``
    (labels in the recipe's own ensemble, ``label.label_fixed``): each member in float64 on the
    CPU, and the committee mean (fields averaged over the members that could be evaluated). A
    member that cannot be used at the recipe's ensemble (a μ-input network whose N(μ) does not reach
    N_e inside its μ range) gets NaN and its message under ``failed``. With two members or more,
    ``calibration`` bins the sites by the committee's torque spread against the real error of the
    committee mean (``sdlib.committee.calibration``)."""
    data = FieldDataset(path)
    members = [copy.deepcopy(ff).to("cpu", torch.float64) for ff in committee]
    per, failed, fields = [], {}, []
    for m, ff in enumerate(members):
        try:
            fields.append(torch.cat([ff(data.spins[k:k + batch]).fields for k in range(0, len(data), batch)]))
        except ValueError as e:
            per.append(math.nan)
            failed[m] = str(e)
            continue
        per.append(_rel(data.spins, fields[-1], data.fields))
    mean = _rel(data.spins, torch.stack(fields).mean(0), data.fields) if fields else math.nan
    out = {"members": per, "committee_mean": mean, "n_frames": len(data)} | ({"failed": failed} if failed else {})
    if len(fields) >= 2:  # per-site spread against the committee mean's real error
        stack = torch.stack(fields)
        spread = torque_spread_of(data.spins, stack)
        error = (torque(data.spins, stack.mean(0)) - torque(data.spins, data.fields)).norm(dim=-1)
        out["calibration"] = calibration(spread, error, n_bins=CALIBRATION_BINS)
    return out


def _rel(spins, fields, ref) -> float:
    t_ref = torque(spins, ref)
    return ((torque(spins, fields) - t_ref).pow(2).sum() / t_ref.pow(2).sum()).sqrt().item()
