"""Training of Behler–Parrinello force fields on (spins, fields, energy) trajectories.

Loss per batch of configurations (PHYSICS.md, "Behler–Parrinello force field")::

    L = MSE(T_ML, T_ref) + λ(epoch) · MSE(E_ML/N, E_ref/N),     T_i = S_i × H_i   (target="torque")
    L = MSE(H_ML, H_ref) + λ(epoch) · MSE(E_ML/N, E_ref/N)                           (target="field")

λ(epoch) = 0 for ``epoch < energy_start``, then rises linearly to ``energy_weight`` over
``energy_ramp`` epochs: the network first learns the fields (which fix E up to a constant), the
energy term then pins the absolute energy scale. Adam with an exponentially decaying learning rate
``lr_e = lr · (lr_final/lr)^{e/(epochs-1)}``; early stopping on the validation field loss, judged
from the epoch at which λ reaches its final value (the best such weights are kept); atomic checkpoints after every epoch, from which a run resumes exactly.
``site_weights`` (e.g. :class:`FMSiteWeights`) turns the first term into a weighted mean over the
sites, Σ w_i |d_i|² / (3 Σ w_i): sites that are rare in the data but decide the physics (the sites
inside the FM clusters of the square study, a few % of all sites, whose torques are the least
local) count more; the validation loss of early stopping is weighted the same way, while
:func:`evaluate` reports plain errors. ``frame_norm=True`` weights each configuration b of a batch
by r̄/r_b, r_b the mean square of its reference torques (fields for target="field") and r̄ their
batch mean: the term becomes the batch mean of the squared *relative* error of each configuration
times r̄, so quiet configurations (late coarsening, ordered domains: torques several times smaller)
count as much as noisy ones, as the relative error by which a network is judged counts them.
Two ways to split data, both deterministic: by trajectory file (:func:`split_by_trajectory`, the
shipped networks' quench files), so no trajectory contributes frames to two splits; or frame by
frame from a hash of each configuration's spins (:func:`split_by_content`, the data engine's
label pools, whose files mix frames of many quenches): a frame's side depends on its spins and the
seed alone, so a configuration that occurs twice sits on one side, and a pool that grows keeps every
old frame where it was (the validation of a training continued from a start split by the same rule
holds no frame that start trained on).

A model with the chemical potential as input (``MLForceField(..., mu_input=True)``) trains on a
:class:`GrandDataset` (labels at K values of μ per configuration): each epoch pairs every
configuration with one μ_k drawn at random, and the energy term becomes
``MSE(Ω_ML/N, Ω_ref/N) + MSE(N_ML/N, N_ref/N)`` (grand potential and electrons per site, N_ML = -∂Ω/∂μ).
"""
from __future__ import annotations

import hashlib
import math
import os
import random
import time

import torch
from tqdm.auto import tqdm

from .analysis import FM_SITE_FRACTION, check_fm_fraction, fm_sites
from .forcefield import torque
from .ensemble import find_mu
from .io import atomic_write, read_grand_labels, read_trajectory

__all__ = ["FieldDataset", "GrandDataset", "FMSiteWeights", "batch_losses", "split_by_trajectory", "split_by_content", "content_keys", "energy_weight", "loss_terms", "evaluate",
           "fit_normalization", "train"]

CKPT_FORMAT = "sdlib.training.checkpoint/1"
TARGETS = ("torque", "field")
GRID_ATOL = 1e-6  # μ grids of label files that agree to this (float32 round-off) are one grid


class FieldDataset:
    """Frames (spins, fields, energy) of one or more trajectory files of the same lattice.

    ``paths``: HDF5 trajectories (``sdlib.io``); ``stride`` (one integer, or one per path) keeps
    every stride-th frame of each.
    Attributes ``spins`` ``[M, N, 3]``, ``fields`` ``[M, N, 3]``, ``energy`` ``[M]`` (float64),
    ``source`` ``[M]`` (index of the file of each frame), ``paths``, ``n_sites``.
    """

    def __init__(self, paths, stride: int = 1):
        paths = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        if not paths:
            raise ValueError("paths must name at least one trajectory file")
        strides = [stride] * len(paths) if isinstance(stride, int) else list(stride)
        if len(strides) != len(paths) or not all(isinstance(k, int) and k >= 1 for k in strides):
            raise ValueError(f"stride must be an integer >= 1 or one such integer per path, got {stride!r}")
        parts = [read_trajectory(p) for p in paths]
        parts = [{k: (v[::st] if k != "params" else v) for k, v in d.items()} for d, st in zip(parts, strides)]
        sizes = {d["spins"].shape[1] for d in parts}
        if len(sizes) != 1:
            raise ValueError(f"all trajectories must have the same number of sites, got {sorted(sizes)}")
        self.paths, self.n_sites = paths, sizes.pop()
        self.spins = torch.cat([d["spins"] for d in parts]).double()
        self.fields = torch.cat([d["fields"] for d in parts]).double()
        self.energy = torch.cat([d["energy"] for d in parts]).double()
        self.source = torch.cat([torch.full((len(d["energy"]),), k) for k, d in enumerate(parts)])
        self.params = [d["params"] for d in parts]

    def __len__(self) -> int:
        return self.spins.shape[0]

    def __getitem__(self, idx):
        return self.spins[idx], self.fields[idx], self.energy[idx]

    def batch(self, idx, seed: int | None = None) -> dict:
        """Frames ``idx`` as a dict (``spins``, ``fields``, ``energy``); ``seed`` is not used here."""
        return {"spins": self.spins[idx], "fields": self.fields[idx], "energy": self.energy[idx]}


class GrandDataset:
    """Configurations with grand-canonical labels at K chemical potentials (``sdlib.io`` label files).

    Attributes ``spins`` ``[M, N, 3]``, ``mu`` ``[K]``, ``energy`` (Ω) ``[M, K]``, ``fields``
    ``[M, K, N, 3]``, ``number`` ``[M, K]``, ``source`` ``[M]``, ``paths``, ``n_sites``. All files must
    share the same μ grid (to ``GRID_ATOL``). :meth:`batch` pairs each configuration with one μ_k.

    With ``n_electrons`` and ``window`` given, each configuration is paired only with the μ_k within
    ``window`` of its own μ* (where its labelled N(μ) crosses N_e, interpolated linearly on the
    grid; the two grid points around μ* are always kept): a model used at fixed filling is then
    trained where the dynamics will query it. ``mu_star`` ``[M]`` and ``allowed`` ``[M, K]`` hold them.
    """

    def __init__(self, paths, n_electrons: int | None = None, window: float | None = None):
        paths = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        if not paths:
            raise ValueError("paths must name at least one label file")
        parts = [read_grand_labels(p) for p in paths]
        ref = parts[0]["mu"].double()
        # one grid to float32 precision (files written with a float32 grid agree with a float64 one)
        same = all(d["mu"].shape == ref.shape and torch.allclose(d["mu"].double(), ref, rtol=0, atol=GRID_ATOL)
                   for d in parts)
        sizes = {d["spins"].shape[1] for d in parts}
        if not same or len(sizes) != 1:
            grids = sorted({tuple(round(x, 6) for x in d["mu"].tolist()) for d in parts})
            raise ValueError(f"all label files must share one mu grid and one lattice, got grids {grids}, "
                             f"sites {sorted(sizes)}")
        self.paths, self.n_sites, self.mu = paths, sizes.pop(), ref
        for key in ("spins", "energy", "fields", "number"):
            setattr(self, key, torch.cat([d[key] for d in parts]).double())
        self.source = torch.cat([torch.full((d["spins"].shape[0],), k) for k, d in enumerate(parts)])
        self.params = [d["params"] for d in parts]
        self.allowed = torch.ones(self.number.shape, dtype=torch.bool)
        self.mu_star = None
        if (n_electrons is None) != (window is None):
            raise ValueError("give both n_electrons and window (or neither)")
        if window is not None:
            if not window > 0:
                raise ValueError(f"window must be > 0, got {window!r}")
            self.mu_star = self._mu_star(float(n_electrons))
            dist = (self.mu[None] - self.mu_star[:, None]).abs()
            nearest_two = dist.argsort(1)[:, :2]
            self.allowed = dist <= window
            self.allowed[torch.arange(len(self)).unsqueeze(1), nearest_two] = True

    def _mu_star(self, n_e: float) -> torch.Tensor:
        """μ where each configuration's labelled N(μ_k), interpolated linearly between grid points,
        equals ``n_e`` (clamped to the grid's ends), by the library's root finder ``ensemble.find_mu``."""
        n, grid = self.number, self.mu
        rows = torch.arange(len(n))

        def number(mu):  # piecewise-linear N(μ) of each configuration
            k = torch.searchsorted(grid, mu.contiguous()).clamp(1, len(grid) - 1)
            n0, n1, m0, m1 = n[rows, k - 1], n[rows, k], grid[k - 1], grid[k]
            return n0 + (mu - m0) / (m1 - m0) * (n1 - n0)

        target = torch.minimum(torch.maximum(torch.full_like(n[:, 0], n_e), n[:, 0]), n[:, -1])
        return find_mu(number, target, grid[0].expand(len(n)).clone(), grid[-1].expand(len(n)).clone())

    def __len__(self) -> int:
        return self.spins.shape[0]

    def batch(self, idx, seed: int | None = None) -> dict:
        """Configurations ``idx`` each at one allowed μ_k: at random (seeded) or, with ``seed=None``,
        the (index mod number allowed)-th of its allowed grid points."""
        idx = torch.as_tensor(idx).reshape(-1)
        allowed = self.allowed[idx]
        if seed is None:
            j = idx % allowed.sum(1)
            k = (allowed.cumsum(1) <= j[:, None]).sum(1)
        else:
            k = torch.multinomial(allowed.double(), 1, generator=torch.Generator().manual_seed(seed)).squeeze(1)
        return {"spins": self.spins[idx], "mu": self.mu[k], "fields": self.fields[idx, k],
                "energy": self.energy[idx, k], "number": self.number[idx, k]}


class FMSiteWeights:
    """Per-site loss weights: ``weight`` on the sites with at least ``min_fraction`` of their
    nearest-neighbour bonds ferromagnetic (:func:`sdlib.analysis.fm_sites`), 1 elsewhere.

    Called with spins ``[..., N, 3]``, returns ``[..., N]`` in their dtype and on their device.
    """

    def __init__(self, lattice, weight: float, min_fraction: float = FM_SITE_FRACTION):
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and 1.0 <= weight <= 1e4):
            raise ValueError(f"weight (of the FM-surrounded sites) must be a number in [1, 1e4], got {weight!r}")
        self.lattice, self.weight, self.min_fraction = lattice, float(weight), check_fm_fraction(min_fraction)

    def __call__(self, spins: torch.Tensor) -> torch.Tensor:
        if spins.shape[-2] != self.lattice.n_sites:
            raise ValueError(f"spins have {spins.shape[-2]} sites, the weights' lattice {self.lattice.n_sites}")
        fm = fm_sites(spins, self.lattice, self.min_fraction)
        return 1.0 + (self.weight - 1.0) * fm.to(spins.dtype)

    def __repr__(self) -> str:
        return f"FMSiteWeights(weight={self.weight:g}, min_fraction={self.min_fraction:g})"


def split_by_trajectory(paths, val: float = 0.15, test: float = 0.15, seed: int = 0):
    """Shuffle the files with ``seed`` and cut them into (train, val, test) lists of paths.

    Each split with a positive fraction gets at least one file; frames of one file never
    appear in two splits.
    """
    paths = sorted(os.fspath(p) for p in paths)
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val and test must be fractions in [0, 1) with val + test < 1, got {val}, {test}")
    n_val = max(int(val > 0), round(val * len(paths)))
    n_test = max(int(test > 0), round(test * len(paths)))
    if len(paths) - n_val - n_test < 1:
        raise ValueError(f"{len(paths)} trajectory files are too few for a train/val/test split; need >= {n_val + n_test + 1}")
    random.Random(seed).shuffle(paths)
    return paths[n_val + n_test:], paths[:n_val], paths[n_val:n_val + n_test]


def content_keys(spins: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A number in [0, 1) for each configuration of ``spins`` ``[M, N, 3]``, from a hash of
    (``seed``, its spins as float64 bytes): equal configurations get equal keys, and a key does not
    depend on the other frames or their order, so choices made by key are stable as a pool grows."""
    if spins.dim() != 3:
        raise ValueError(f"spins must be [M, N, 3] configurations, got shape {tuple(spins.shape)}")
    salt = int(seed).to_bytes(8, "little", signed=True)
    return torch.tensor([int.from_bytes(hashlib.blake2b(s.to(torch.float64).contiguous().numpy().tobytes(), digest_size=8,
                                                        salt=salt).digest(), "little") / 2.0 ** 64
                         for s in spins.detach().cpu()], dtype=torch.float64)


def split_by_content(spins: torch.Tensor, val: float = 0.15, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) of the configurations ``spins`` ``[M, N, 3]``: frame m goes to validation
    when its :func:`content_keys` (``seed``) falls below ``val``, so the validation share is ``val``
    on average (binomial), equal configurations share a side, and a frame keeps its side whatever
    other frames join the pool. Each side gets at least one frame (the frame of smallest key goes to
    validation, that of largest to training).
    """
    if not (isinstance(val, (int, float)) and 0 < val < 1):
        raise ValueError(f"val must be a fraction in (0, 1), got {val!r}")
    if spins.dim() != 3 or spins.shape[0] < 2:
        raise ValueError(f"spins must be [M, N, 3] with M >= 2 configurations, got shape {tuple(spins.shape)}")
    keys = content_keys(spins, seed)
    is_val, order = keys < val, keys.argsort()
    is_val[order[0]], is_val[order[-1]] = True, False
    return torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()


def energy_weight(epoch: int, final: float, start: int, ramp: int) -> float:
    """λ(epoch): 0 before ``start``, linear to ``final`` over ``ramp`` epochs, then ``final``."""
    if epoch < start:
        return 0.0
    return final * min(1.0, (epoch - start + 1) / max(ramp, 1))


def loss_terms(ff, spins, fields, energy, target: str = "torque", create_graph: bool = True):
    """(field-or-torque MSE, energy-per-site MSE) of ``ff`` on a batch ``[B, N, 3]``."""
    return batch_losses(ff, {"spins": spins, "fields": fields, "energy": energy}, target, create_graph)


def batch_losses(ff, batch: dict, target: str = "torque", create_graph: bool = True, site_weights=None,
                 frame_norm: bool = False):
    """(field-or-torque MSE, energy-per-site MSE) of ``ff`` on a batch dict of a dataset.

    A batch with ``mu`` (:class:`GrandDataset`) is evaluated by ``ff.grand`` at those μ, and its
    second term adds the MSE of the electrons per site. ``site_weights``: a callable of the spins
    ``[B, N, 3]`` giving ``[B, N]`` weights ≥ 0 (:class:`FMSiteWeights`); the first term is then
    the weighted mean over sites (equal to the MSE for equal weights). ``frame_norm``: each
    configuration weighted by r̄/r_b (module docstring).
    """
    spins = batch["spins"].to(ff.dtype)
    grand = "mu" in batch
    out = ff.grand(spins, batch["mu"], create_graph=create_graph) if grand else ff(spins, create_graph=create_graph)
    ref = batch["fields"].to(out.fields)
    target_ref = torque(spins.to(ref), ref) if target == "torque" else ref
    d = (torque(spins.to(ref), out.fields) if target == "torque" else out.fields) - target_ref
    N = spins.shape[-2]
    le = ((out.energy - batch["energy"].to(out.energy)) / N).pow(2).mean()
    if grand:
        le = le + ((out.number - batch["number"].to(out.number)) / N).pow(2).mean()
    w = None if site_weights is None else site_weights(spins).to(d)
    if not frame_norm:
        return (d.pow(2).mean() if w is None else (w[..., None] * d.pow(2)).sum() / (3 * w.sum())), le
    r = target_ref.detach().pow(2).mean(dim=(-2, -1))  # [B]: mean square reference torque of each configuration
    if not bool((r > 0).all()):
        raise ValueError("frame_norm needs configurations with nonzero reference torques (fields); a batch "
                         "holds one whose torques all vanish (an exactly ordered state?)")
    per_frame = (d.pow(2).mean(dim=(-2, -1)) if w is None
                 else (w[..., None] * d.pow(2)).sum(dim=(-2, -1)) / (3 * w.sum(dim=-1)))
    return (per_frame * (r.mean() / r)).mean(), le


@torch.no_grad()
def fit_normalization(ff, dataset: FieldDataset, max_frames: int = 64) -> None:
    """Fit the feature mean/std, energy shift (mean E/N) and scale (field RMS) on ``dataset``."""
    idx = torch.linspace(0, len(dataset) - 1, min(max_frames, len(dataset))).round().long()
    b = dataset.batch(idx)
    feats = ff.descriptor(b["spins"].to(ff.dtype))
    field_rms = torque(b["spins"], b["fields"]).pow(2).sum(-1).mean().sqrt().item()
    if "mu" in b:
        N = dataset.n_sites
        ff.net.fit_normalization(feats, dataset.energy / N, field_rms, dataset.mu, dataset.number / N)
    else:
        ff.net.fit_normalization(feats, dataset.energy / dataset.n_sites, field_rms)


def evaluate(ff, dataset, batch_size: int = 8) -> dict:
    """Errors of ``ff`` on ``dataset``: torque RMSE and relative error ‖T_ML − T_ref‖/‖T_ref‖,
    field RMSE, energy-per-site RMSE (units of t). On a :class:`GrandDataset` (configuration m at
    μ_k, k = m mod K) the energy is Ω and ``number_rmse_per_site`` is added."""
    num = den = dh = de = dn = 0.0
    grand = isinstance(dataset, GrandDataset)
    for k in range(0, len(dataset), batch_size):
        b = dataset.batch(torch.arange(k, min(k + batch_size, len(dataset))))
        s, h = b["spins"], b["fields"]
        out = ff.grand(s.to(ff.dtype), b["mu"]) if grand else ff(s.to(ff.dtype))
        t_ml, t_ref = torque(s, out.fields.double()), torque(s, h)
        num += (t_ml - t_ref).pow(2).sum().item()
        den += t_ref.pow(2).sum().item()
        dh += (out.fields.double() - h).pow(2).sum().item()
        de += ((out.energy.double() - b["energy"]) / dataset.n_sites).pow(2).sum().item()
        if grand:
            dn += ((out.number.double() - b["number"]) / dataset.n_sites).pow(2).sum().item()
    n = len(dataset) * dataset.n_sites * 3
    res = {"torque_rmse": math.sqrt(num / n), "torque_rel": math.sqrt(num / den), "field_rmse": math.sqrt(dh / n),
           "energy_rmse_per_site": math.sqrt(de / len(dataset)), "n_frames": len(dataset)}
    return res | ({"number_rmse_per_site": math.sqrt(dn / len(dataset))} if grand else {})


def _batches(n: int, batch_size: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    return [perm[k:k + batch_size] for k in range(0, n, batch_size)]


def _val_loss(ff, val_set, batch_size, target, site_weights=None, frame_norm=False) -> tuple[float, float]:
    lf = le = 0.0
    for k in range(0, len(val_set), batch_size):
        idx = torch.arange(k, min(k + batch_size, len(val_set)))
        f, en = batch_losses(ff, val_set.batch(idx), target, create_graph=False, site_weights=site_weights,
                             frame_norm=frame_norm)
        lf, le = lf + f.item() * len(idx), le + en.item() * len(idx)
    return lf / len(val_set), le / len(val_set)


def train(ff, train_set: FieldDataset, val_set: FieldDataset, *, epochs: int = 100, batch_size: int = 4,
          lr: float = 3e-3, lr_final: float = 1e-4, target: str = "torque", energy_weight_final: float = 0.1,
          energy_start: int | None = None, energy_ramp: int | None = None, patience: int = 20,
          checkpoint=None, seed: int = 0, progress: bool = True, max_minutes: float | None = None,
          normalize: bool = True, keep_initial: bool = False, site_weights=None, grad_clip: float | None = None,
          frame_norm: bool = False) -> dict:
    """Fit ``ff`` (an ``MLForceField``) in place; return the history dict.

    History: ``epoch``, ``train_loss``, ``train_field``, ``val_field``, ``val_energy``, ``lr``,
    ``energy_weight`` (lists, one entry per epoch), ``best_epoch``, ``best_val``, ``stopped``
    ("epochs", "early", or "time"), ``wall_s``. The best-validation weights are restored at the end.
    ``energy_start``/``energy_ramp`` default to epochs/3 and epochs/3. ``keep_initial=True`` (a warm
    start, :mod:`sdlib.warmstart`, with ``normalize=False``) counts the starting weights as epoch -1
    of the best-validation choice, so the result is never worse on validation than the start.
    ``site_weights``: per-site weights of the field/torque term (module docstring; None: equal).
    ``frame_norm``: weight each configuration by the inverse mean square of its reference torques
    (module docstring); the validation loss is weighted the same way.
    ``grad_clip`` = c: a step whose gradient norm exceeds c times the median norm of the last
    ``CLIP_WINDOW`` steps is scaled down to that (none during the first ``CLIP_WARMUP`` steps); the
    number of such steps is returned as ``clipped_steps``. A rare very large gradient (a level of the
    level head crossing μ in one configuration) then cannot throw Adam's moments off.
    """
    _check_train_args(epochs, batch_size, lr, lr_final, target, patience, max_minutes)
    if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and math.isfinite(grad_clip) and grad_clip >= 1):
        raise ValueError(f"grad_clip must be None or a number >= 1 (times the median gradient norm), got {grad_clip!r}")
    energy_start = epochs // 3 if energy_start is None else energy_start
    energy_ramp = max(1, epochs // 3) if energy_ramp is None else energy_ramp
    torch.manual_seed(seed)
    if normalize:
        fit_normalization(ff, train_set)
    opt = torch.optim.Adam(ff.net.parameters(), lr=lr)
    hist = {k: [] for k in ("epoch", "train_loss", "train_field", "val_field", "val_energy", "lr", "energy_weight")}
    state = {"best_val": math.inf, "best_epoch": -1, "bad": 0, "start": 0, "wall": 0.0,
             "best": {k: v.clone() for k, v in ff.net.state_dict().items()}, "grad_norms": [], "clipped": 0}
    run_cfg = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "lr_final": lr_final, "target": target,
               "seed": seed, "n_train": len(train_set), "n_val": len(val_set)}
    if site_weights is not None:  # (absent otherwise: checkpoints of unweighted runs stay valid)
        run_cfg["site_weights"] = repr(site_weights)
    if grad_clip is not None:  # (likewise)
        run_cfg["grad_clip"] = float(grad_clip)
    if frame_norm:  # (likewise)
        run_cfg["frame_norm"] = True
    if checkpoint is not None and os.path.exists(checkpoint):
        hist, state = _resume(checkpoint, ff, opt, run_cfg)
    elif keep_initial:
        state["best_val"] = _val_loss(ff, val_set, 2 * batch_size, target, site_weights, frame_norm)[0]
    t0, stopped = time.time() - state["wall"], "epochs"
    bar = tqdm(range(state["start"], epochs), disable=not progress, desc="training")
    for epoch in bar:
        lam = energy_weight(epoch, energy_weight_final, energy_start, energy_ramp)
        rate = lr * (lr_final / lr) ** (epoch / max(epochs - 1, 1))
        for g in opt.param_groups:
            g["lr"] = rate
        tot = fld = 0.0
        for j, idx in enumerate(_batches(len(train_set), batch_size, seed * 100003 + epoch)):
            lf, le = batch_losses(ff, train_set.batch(idx, (seed * 7919 + epoch) * 100003 + j), target,
                                  site_weights=site_weights, frame_norm=frame_norm)
            loss = lf + lam * le
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                _clip_gradient(ff.net.parameters(), grad_clip, state)
            opt.step()
            tot, fld = tot + loss.item() * len(idx), fld + lf.item() * len(idx)
        vf, ve = _val_loss(ff, val_set, 2 * batch_size, target, site_weights, frame_norm)
        for k, v in zip(hist, (epoch, tot / len(train_set), fld / len(train_set), vf, ve, rate, lam)):
            hist[k].append(v)
        # early stopping only judges epochs trained with the final energy weight: a model kept
        # from before the energy term was switched on would carry no energy information
        settled = epoch >= min(energy_start + energy_ramp - 1, epochs - 1)
        if settled and vf < state["best_val"]:
            state.update(best_val=vf, best_epoch=epoch, bad=0, best={k: v.clone() for k, v in ff.net.state_dict().items()})
        elif settled:
            state["bad"] += 1
        bar.set_postfix(train=f"{tot / len(train_set):.3g}", val=f"{vf:.3g}")
        state.update(start=epoch + 1, wall=time.time() - t0)
        if checkpoint is not None:
            _save_checkpoint(checkpoint, ff, opt, hist, state, run_cfg)
        if state["bad"] >= patience:
            stopped = "early"
            break
        if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
            stopped = "time"
            break
    bar.close()
    ff.net.load_state_dict(state["best"])
    return hist | {"best_epoch": state["best_epoch"], "best_val": state["best_val"], "stopped": stopped,
                   "wall_s": time.time() - t0, "clipped_steps": state.get("clipped", 0)}


CLIP_WINDOW = 200  # steps whose gradient norms set the clipping limit of train(grad_clip=...)
CLIP_WARMUP = 20   # steps before any clipping


def _clip_gradient(params, factor: float, state: dict) -> None:
    """Scale the gradients of ``params`` down to ``factor`` × the median norm of the recent steps
    (``state["grad_norms"]``, which keeps the clipped norms, so one spike does not raise the limit)."""
    params = [p for p in params if p.grad is not None]
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))
    norms = state["grad_norms"]
    if not math.isfinite(norm):  # left to the optimiser (and to the validation loss that judges it)
        return
    if len(norms) >= CLIP_WARMUP:
        limit = factor * sorted(norms)[len(norms) // 2]
        if norm > limit:
            for p in params:
                p.grad.mul_(limit / norm)
            norm, state["clipped"] = limit, state["clipped"] + 1
    norms.append(norm)
    del norms[:-CLIP_WINDOW]


def _check_train_args(epochs, batch_size, lr, lr_final, target, patience, max_minutes) -> None:
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if not (lr > 0 and lr_final > 0):
        raise ValueError(f"lr and lr_final must be > 0, got {lr}, {lr_final}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"max_minutes must be > 0 or None, got {max_minutes}")


def _save_checkpoint(path, ff, opt, hist, state, run_cfg) -> None:
    blob = {"format": CKPT_FORMAT, "config": run_cfg, "net": ff.net.state_dict(), "optimizer": opt.state_dict(),
            "history": hist, "state": state}
    with atomic_write(path) as f:
        torch.save(blob, f)


def _resume(path, ff, opt, run_cfg):
    try:
        blob = torch.load(path, weights_only=True)
    except Exception as e:
        raise ValueError(f"checkpoint {path} cannot be read safely: {e}") from None
    if not isinstance(blob, dict) or blob.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path} is not a training checkpoint ({CKPT_FORMAT})")
    if blob["config"] != run_cfg:
        raise ValueError(f"checkpoint {path} was written by a run with other settings: {blob['config']} != {run_cfg}; "
                         "remove it or use another path")
    ff.net.load_state_dict(blob["net"])
    opt.load_state_dict(blob["optimizer"])
    return blob["history"], blob["state"]
