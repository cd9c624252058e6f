"""Training of the two models shipped in ``sdlib/data`` on the data of ``shipped`` (their recipes).

``train`` fits an ``MLForceField`` to the files of ``<data>/<name>/``, split by trajectory (quench
files into train/val/test, each of val and test ~20 %; random configurations all train), and writes
the model and its provenance record to ``sdlib/data/<name>.{safetensors,json}`` (``out_dir``
elsewhere). On grand-canonical label files (``shipped.label_grand``) it builds a μ-input model used
at the recipe's filling, each frame trained near its own μ* (``train_grand`` settings of the
recipe); ``check_dir`` names canonical labels of the same frames on which its held-out error is
measured. ``init_from`` starts as a trained model whose features are among the new ones
(``sdlib.warmstart``). ``seed`` (with ``out_dir``) trains another member of a committee: other
initial weights and batch order, the same data and split. ``levels`` = K > 0 gives a μ-input model
the level head of ``sdlib.levelhead`` (K local levels per site, N(μ) rising); ``grad_clip`` clips
rare gradient spikes (``training.train``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..lattice import Lattice
from .shipped import RECIPES, check_coupling, file_params

__all__ = ["TRAIN", "split", "train"]

DATA = Path(__file__).resolve().parent.parent / "data"


# Network and optimiser settings of the shipped models (float32 training, float64 evaluation).
TRAIN = dict(hidden=(64, 64), activation="silu", quench_stride=1, epochs=40, batch_size=4, lr=3e-3, lr_final=1e-4,
             target="torque", energy_weight_final=1.0, energy_start=3, energy_ramp=3, patience=8, seed=0)


def split(name: str, data_dir: str):
    """Quench trajectories split by file into train/val/test (each of val and test gets ~20 %);
    the random configurations all train. Validation and test then measure what the dynamics
    needs: fields along quench trajectories the network never saw."""
    from ..training import split_by_trajectory

    files = sorted(os.path.join(data_dir, name, f) for f in os.listdir(os.path.join(data_dir, name)) if f.endswith(".h5"))
    quench = [f for f in files if os.path.basename(f).startswith("quench")]
    tr, va, te = split_by_trajectory(quench, val=0.2, test=0.2, seed=TRAIN["seed"])
    return tr + [f for f in files if f not in quench], va, te


def _data_ensemble(paths, physics: dict) -> dict:
    """The electrons the data were labelled with: ``{"mu" or "filling", "kT"}`` of the recipe, or
    the ensemble ``relabel`` recorded in the files (which must all agree)."""
    found = {json.dumps(file_params(p).get("ensemble"), sort_keys=True) for p in paths}
    if len(found) != 1:
        raise ValueError(f"the data files mix electron ensembles: {sorted(found)}")
    return json.loads(found.pop()) or _ensemble(physics) | {"kT": physics["kT"]}


def _is_grand_labels(path: str) -> bool:
    import h5py

    with h5py.File(path, "r") as h5:
        return "mu" in h5 and "number" in h5


def train(name: str, data_dir: str, epochs=None, max_minutes: float = 15.0, out_dir: str | None = None,
          cutoff: float | None = None, check_dir: str | None = None, phase_cutoff: float | None = None,
          init_from: str | None = None, lr: float | None = None, lr_final: float | None = None,
          recipe: dict | None = None, seed: int | None = None, levels: int = 0,
          grad_clip: float | None = None) -> None:
    from ..descriptors import Descriptor
    from ..nn import MLForceField
    from ..provenance import provenance
    from ..training import FieldDataset, GrandDataset, evaluate
    from ..training import train as fit

    rec = recipe or RECIPES[name]
    cfg = dict(TRAIN, **rec.get("train", {}))
    cfg["epochs"] = epochs or cfg["epochs"]
    if cutoff is not None:
        cfg["cutoff"] = cutoff
    if phase_cutoff is not None:
        cfg["phase_cutoff"] = phase_cutoff
    phys = rec["physics"]
    lat = Lattice(phys["kind"], phys["L"])
    tr, va, te = split(name, data_dir)
    check_coupling(tr + va + te, phys)
    physics = {"lattice": phys["kind"], "L": phys["L"], "t": phys["t"], "J": phys["J"]}
    grand = _is_grand_labels(tr[0])
    if grand:  # μ-input model: grand-canonical labels at several μ, used at the recipe's filling
        cfg |= rec.get("train_grand", {})
        cfg["epochs"] = epochs or cfg["epochs"]
        n_e = round(2 * lat.n_sites * phys["filling"])
        window = {"n_electrons": n_e, "window": cfg["mu_window"]} if "mu_window" in cfg else {}
        sets = [GrandDataset(p, **window) for p in (tr, va, te)]
        mus = sets[0].mu.tolist()
        physics |= {"filling": phys["filling"], "kT": sets[0].params[0]["ensemble"]["kT"], "mu_range": [min(mus), max(mus)]}
    else:
        # consecutive quench frames are nearly identical: keep every quench_stride-th
        stride = lambda paths: [cfg["quench_stride"] if "quench" in os.path.basename(p) else 1 for p in paths]  # noqa: E731
        sets = [FieldDataset(p, stride=stride(p)) for p in (tr, va, te)]
        physics |= _data_ensemble(tr + va + te, phys)
    cfg |= {k: v for k, v in (("lr", lr), ("lr_final", lr_final)) if v is not None}
    if seed is not None:  # another committee member: other initial weights and batch order, the same split
        if not (isinstance(seed, int) and seed >= 0):
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if out_dir is None and seed != TRAIN["seed"]:
            raise ValueError("a seed other than the shipped model's needs out_dir (sdlib/data holds the shipped model)")
        cfg["seed"] = seed
    torch.manual_seed(cfg["seed"])
    desc = Descriptor(lat, **{k: cfg[k] for k in ("cutoff", "phase_cutoff") if k in cfg})
    if levels and not grand:
        raise ValueError(f"levels = {levels} needs grand-canonical labels (a μ-input model); {tr[0]} has none")
    if levels:
        cfg["levels"] = levels
    if grad_clip is not None:
        cfg["grad_clip"] = grad_clip
    ff = MLForceField(desc, hidden=cfg["hidden"], activation=cfg["activation"], physics=physics, mu_input=grand,
                      levels=levels)
    if init_from is not None:  # start as a trained model whose features are among these (sdlib.warmstart)
        cfg |= warm_start_from(ff, init_from, sets[0], physics) | {"energy_start": 0, "energy_ramp": 1}
    ff = ff.to(torch.float32)
    # the checkpoint lives beside the model of an experiment (out_dir), so runs on the same data do not share it
    ckpt = "train.ckpt" if cfg["seed"] == TRAIN["seed"] else f"train-seed{cfg['seed']}.ckpt"
    ckpt = os.path.join(data_dir, name, ckpt) if out_dir is None else os.path.join(out_dir, f"{name}.{ckpt}")
    os.makedirs(os.path.dirname(ckpt), exist_ok=True)
    hist = fit(ff, sets[0], sets[1], epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
               lr_final=cfg["lr_final"], target=cfg["target"], energy_weight_final=cfg["energy_weight_final"],
               energy_start=cfg["energy_start"], energy_ramp=cfg["energy_ramp"],
               patience=cfg["patience"], checkpoint=ckpt, seed=cfg["seed"], max_minutes=max_minutes,
               normalize=init_from is None, keep_initial=init_from is not None, grad_clip=cfg.get("grad_clip"))
    ff = ff.to(torch.float64)
    errors = {split: evaluate(ff, ds) for split, ds in zip(("train", "val", "test"), sets)}
    # the accuracy that matters for dynamics: quench trajectories the network never saw
    held_out = [p for p in va + te if "quench" in os.path.basename(p)]
    if grand and check_dir is None:
        print("no --check data: the fixed-filling accuracy on held-out quenches is not measured", flush=True)
    elif held_out:  # a μ-input model is judged at fixed filling against canonical labels of the same frames
        if check_dir is not None:
            held_out = [os.path.join(check_dir, name, os.path.basename(p)) for p in held_out]
        errors["held_out_quenches"] = evaluate(ff, FieldDataset(held_out)) | {
            "files": [os.path.basename(p) for p in held_out], "ensemble": _data_ensemble(held_out, phys)}
    print(json.dumps(errors, indent=1), flush=True)
    ff.provenance = {
        "script": "scripts/make_models.py", "recipe": rec, "training": {k: list(v) if isinstance(v, tuple) else v
                                                                          for k, v in cfg.items()},
        "data": {"train": [os.path.basename(p) for p in tr], "val": [os.path.basename(p) for p in va],
                 "test": [os.path.basename(p) for p in te], "frames": [len(s) for s in sets],
                 "reference": "ExactSolver (exact diagonalisation), LLG midpoint quenches + random configurations"},
        "history": {k: hist[k] for k in ("train_loss", "val_field", "val_energy", "lr", "energy_weight")},
        "epochs_run": len(hist["epoch"]), "best_epoch": hist["best_epoch"], "stopped": hist["stopped"],
        **({"clipped_steps": hist["clipped_steps"]} if cfg.get("grad_clip") is not None else {}),
        "errors": errors, "wall_s_training": round(hist["wall_s"], 1),
        **provenance(),  # commit, versions, hardware, date
    }
    out = os.path.join(out_dir or DATA, name)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    print(ff.save(out), flush=True)
    os.remove(ckpt)


def warm_start_from(ff, path: str, train_set, physics: dict) -> dict:
    """Fit ``ff``'s normalisation on ``train_set``, then set it to compute what the model at ``path``
    computes; refuses a model of other physics. Returns the provenance entry of the start."""
    from ..nn import MLForceField
    from ..training import fit_normalization
    from ..warmstart import warm_start

    old = MLForceField.load(path, lattice=Lattice(physics["lattice"], physics["L"]))
    for key in ("t", "J", "filling"):
        if old.physics.get(key) != physics.get(key):
            raise ValueError(f"init_from {path}: trained for {key} = {old.physics.get(key)}, this run has "
                             f"{physics.get(key)}")
    fit_normalization(ff, train_set)
    warm_start(ff, old)
    return {"init_from": {"file": os.path.basename(path), "weights_sha256": old.weights_sha256,
                          "cutoff": old.descriptor.cutoff, "n_features": old.descriptor.n_features}}
