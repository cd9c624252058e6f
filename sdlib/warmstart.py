"""Warm start of a Behler–Parrinello network from a trained one with fewer features.

A larger cutoff r_c makes the torques learnable to a lower floor, but a network on the larger
descriptor trained from random weights learns slowly. When every feature of a trained model ``old``
is also a feature of the new descriptor (for example the r_c = 2.3 square descriptor inside the lean
r_c = 4.6, r_p = 2.3 one: every power spectrum is kept, and every relative phase of two copies of
which one lies within 2.3), the new network can start *as* the old one:

    first layer:  W_new[:, k(j)] = W_old[:, j],  W_new[:, k] = 0 for features k not in ``old``,
    feature normalisation of k(j) = that of j, later layers and energy shift/scale copied,

The new network may also be wider (same depth, each hidden layer at least as wide): the old units
keep their weights, the added units keep their random incoming weights (so they differ from each
other) and get zero outgoing weights, so again nothing changes until training moves them. Then
``ff`` computes exactly the energies and fields of ``old`` (to round-off), and training can only
lower the loss from there (``train(..., normalize=False, keep_initial=True)``). The map j → k(j) is
found by value, not by name, on random configurations: the copies of an irrep are numbered
differently at different cutoffs.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .model import random_spins

__all__ = ["match_features", "warm_start"]


@torch.no_grad()
def match_features(old_descriptor, new_descriptor, n_probe: int = 2, seed: int = 0, rtol: float = 1e-9) -> torch.Tensor:
    """Index ``k`` with ``new(spins)[..., k[j]] == old(spins)[..., j]`` for every feature j of ``old``.

    Both descriptors must be built on the same lattice (on any devices). Compared on ``n_probe`` random
    unit-spin configurations (``random_spins``, ``seed``) in float64 on the CPU; a feature of ``old`` with
    no equal column (relative distance > ``rtol``) raises ``ValueError`` naming it. ``k`` is on the CPU.
    """
    if (old_descriptor.kind, old_descriptor.n_sites) != (new_descriptor.kind, new_descriptor.n_sites):
        raise ValueError(f"the descriptors are built on different lattices ({old_descriptor.kind}, "
                         f"{old_descriptor.n_sites} sites vs {new_descriptor.kind}, {new_descriptor.n_sites} sites); "
                         "load the old model with lattice= the new one's")
    spins = random_spins(old_descriptor.n_sites, n_probe, seed=seed)
    cols = []
    for d in (old_descriptor, new_descriptor):
        d64 = copy.deepcopy(d).to(device="cpu", dtype=torch.float64)
        cols.append(d64(spins).reshape(-1, d64.n_features).T)  # [F, n_probe · N]
    dist, k = torch.cdist(cols[0], cols[1], compute_mode="donot_use_mm_for_euclid_dist").min(dim=1)
    scale = cols[0].norm(dim=1).clamp_min(1e-300)
    bad = (dist > rtol * scale).nonzero().flatten().tolist()
    if bad:
        names = [old_descriptor.feature_names[j] for j in bad[:5]]
        raise ValueError(f"{len(bad)} features of the old descriptor (e.g. {names}) are not features of the new one "
                         f"(cutoff {new_descriptor.cutoff}, phase_cutoff {new_descriptor.phase_cutoff}); "
                         "choose a new descriptor that contains the old one (larger cutoff and phase_cutoff)")
    return k


@torch.no_grad()
def warm_start(ff, old) -> torch.Tensor:
    """Set the network of ``ff`` so that it computes what ``old`` computes (module docstring).

    ``ff`` and ``old`` are ``MLForceField`` s on the same lattice with the same activation,
    ``mu_input`` and depth, each hidden layer of ``ff`` at least as wide as that of ``old``; call
    this after the feature normalisation of ``ff`` was fitted (the features ``old`` lacks keep it).
    Returns the matched feature index (``match_features``).
    """
    new, prev = ff.net, old.net
    for attr in ("activation", "mu_input", "levels"):
        if getattr(new, attr) != getattr(prev, attr):
            raise ValueError(f"{attr} differs: the new network has {getattr(new, attr)!r}, the old one "
                             f"{getattr(prev, attr)!r}; a warm start needs the same network shape")
    if len(new.hidden) != len(prev.hidden) or any(a < b for a, b in zip(new.hidden, prev.hidden)):
        raise ValueError(f"hidden differs: the new network has {tuple(new.hidden)!r}, the old one "
                         f"{tuple(prev.hidden)!r}; a warm start needs the same depth and layers at least as wide")
    k = match_features(old.descriptor, ff.descriptor).to(new.feature_mean.device)
    new.feature_mean[k] = prev.feature_mean.to(new.feature_mean)
    new.feature_std[k] = prev.feature_std.to(new.feature_std)
    layers = [m for m in new.mlp if isinstance(m, nn.Linear)]
    layers_old = [m for m in prev.mlp if isinstance(m, nn.Linear)]
    first, first_old = layers[0], layers_old[0]
    h = first_old.weight.shape[0]
    first.weight[:h] = 0.0  # old units: the old weights on the old features, nothing on the new ones
    first.weight[:h, k] = first_old.weight[:, :prev.n_features].to(first.weight)
    if new.mu_input and not new.levels:
        first.weight[:h, new.n_features] = first_old.weight[:, prev.n_features].to(first.weight)
    first.bias[:h] = first_old.bias.to(first.bias)
    for lin, lin_old in zip(layers[1:], layers_old[1:]):
        out, inp = lin_old.weight.shape
        lin.weight[:out, :inp] = lin_old.weight.to(lin.weight)
        lin.weight[:, inp:] = 0.0  # added units of the layer below feed nothing
        lin.bias[:out] = lin_old.bias.to(lin.bias)
    head = ("level_center", "level_width", "level_kT") if new.levels else ("mu_mean", "mu_std", "number_shift")
    for name in ("energy_shift", "energy_scale") + (head if new.mu_input else ()):
        getattr(new, name).copy_(getattr(prev, name))
    return k
