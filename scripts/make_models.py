"""Generate the training data of the shipped models and train them.

Usage (from the repository root)::

    python scripts/make_models.py generate square-double-exchange [--data data/models]
    python scripts/make_models.py generate triangular-tetrahedral
    python scripts/make_models.py train triangular-tetrahedral

    # the shipped square model: μ as an input, grand-canonical labels at T_e = 0.05 on a μ grid,
    # judged at fixed filling against canonical labels of the same frames
    python scripts/make_models.py label-grand square-double-exchange --mus=-6.4:-2.0:12 --kT 0.05 --to data/models-grand-wide
    python scripts/make_models.py relabel square-double-exchange --filling 0.485 --kT 0.05 --to data/models-ct
    python scripts/make_models.py train square-double-exchange --data data/models-grand-wide --check data/models-ct

    # experiments (never overwrite sdlib/data: --out)
    python scripts/make_models.py label-grand triangular-tetrahedral --mus=-3.2:-2.0:13 --kT 0.05 --to data/models-grand-wide
    python scripts/make_models.py relabel triangular-tetrahedral --filling 0.25 --kT 0.05 --to data/models-ct
    python scripts/make_models.py train triangular-tetrahedral --data data/models-grand-wide --check data/models-ct --out DIR
    python scripts/make_models.py relabel square-double-exchange --mu -4.4 --kT 0.05 --to data/models-gc
    python scripts/make_models.py train square-double-exchange --data data/models --out DIR [--epochs N] [--cutoff R]
        [--phase-cutoff RP]
    # more training quenches, then a warm start from the shipped model (sdlib.warmstart): held-out 0.121 -> 0.111
    python scripts/make_models.py generate square-double-exchange --extra
    python scripts/make_models.py label-grand square-double-exchange --mus=-6.4:-2.0:12 --kT 0.05 --to data/models-grand-wide
    python scripts/make_models.py train square-double-exchange --data data/models-grand-wide --check data/models-ct \
        --init-from sdlib/data/square-double-exchange --lr 1e-4 --lr-final 1e-5 --max-minutes 24 --out DIR

    # the same recipe at another exchange coupling (the J sweep of chapter 04); --J needs its own
    # --data directory, and train needs --out
    python scripts/make_models.py generate triangular-tetrahedral --J 3 --data data/models-J3
    python scripts/make_models.py train triangular-tetrahedral --J 3 --data data/models-J3 --out DIR

``generate`` runs exact-diagonalisation LLG quenches from random spins into baths at several
temperatures (one HDF5 trajectory per seed) and adds random configurations (uniform random and
noisy ferromagnetic / antiferromagnetic ones), all under ``<data>/<name>/`` (``data/`` is not
tracked by git). Files that already exist are kept, so an interrupted run continues where it stopped.
``--shard k/n`` makes a process write only every n-th file (starting at the k-th), so n processes
generate one data set in parallel. ``train`` fits an ``MLForceField`` to those files, split by
trajectory, and writes the model and its provenance record to ``sdlib/data/<name>.{safetensors,json}``
(``--out DIR`` writes elsewhere, ``--cutoff`` overrides the descriptor cutoff: for experiments).
``relabel`` recomputes the fields and energies of every stored configuration in another electron
ensemble (grand canonical at ``--mu`` or canonical at ``--filling``, temperature ``--kT``) into
``<to>/<name>/``. ``label-grand`` stores Ω, fields and electron number at every μ of a grid (one
diagonalisation per configuration); ``train`` on such files builds a μ-input model
(``MLForceField(..., mu_input=True)``) used at the recipe's filling with the labels' T_e, each
frame trained near its own μ* (``train_grand`` settings of the recipe); ``--check`` names the
canonical labels of the same frames on which its held-out error is measured.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sdlib import ExactSolver, SDModel, lattice  # noqa: E402

# Physics and data-generation recipe of each shipped model.
RECIPES = {
    "square-double-exchange": dict(
        physics=dict(kind="square", L=16, t=1.0, J=6.0, filling=0.485, kT=0.0),
        quench=dict(dt=0.05, alpha=0.5, n_steps=800, every=10, seeds=[101, 102, 103, 104, 105, 106, 107, 108, 109, 110],
                    bath_kT=[0.0, 0.005, 0.01, 0.02, 0.0, 0.05, 0.01, 0.02, 0.05, 0.005]),
        random=dict(files=[(201, 24), (202, 24)], uniform=[(203 + k, 30) for k in range(4)]),
        # generate --extra: more quenches, training only (extra_quench_s*.h5; the held-out split stays as it was)
        extra_quench=dict(seeds=list(range(111, 119)), bath_kT=[0.0, 0.005, 0.01, 0.02, 0.05, 0.0, 0.01, 0.02]),
        # a μ-input model (labels of label-grand) trains near each frame's own μ*, more gently
        train_grand=dict(lr=2e-3, lr_final=1e-4, patience=15, epochs=100, mu_window=0.8),
    ),
    "triangular-tetrahedral": dict(
        physics=dict(kind="triangular", L=12, t=1.0, J=2.0, filling=0.25, kT=0.0),
        quench=dict(dt=0.05, alpha=0.5, n_steps=2000, every=10, seeds=[101, 102, 103, 104, 105, 106, 107, 108, 109, 110],
                    bath_kT=[0.0, 0.002, 0.005, 0.01, 0.0, 0.02, 0.005, 0.01, 0.02, 0.002]),
        random=dict(files=[(201, 40), (202, 40)], uniform=[(203 + k, 50) for k in range(4)]),
        train=dict(lr=1e-3, lr_final=3e-5),  # validation error rises after one epoch at lr = 3e-3
        # labels of label-grand on [-3.2, -2.0] (13 values), T_e = 0.05: the μ* of every frame lies in [-2.7, -2.2]
        train_grand=dict(lr=1e-3, lr_final=3e-5, patience=15, epochs=100, mu_window=0.5),
    ),
}


def with_coupling(recipe: dict, J: float) -> dict:
    """A copy of ``recipe`` whose physics has exchange coupling ``J`` (everything else unchanged)."""
    if not 0 < J <= 20:
        raise SystemExit(f"--J must lie in (0, 20] (units of t), got {J}")
    return recipe | {"physics": recipe["physics"] | {"J": float(J)}}


def apply_coupling(parser, args, needs_out: bool = False) -> None:
    """``--J``: replace ``RECIPES[args.name]`` by its copy at ``args.J``. Data of another J need their
    own ``--data`` directory and, where a model is written, their own ``--out`` (parser errors)."""
    if args.J is None:
        return
    if args.data == parser.get_default("data"):
        parser.error("--J needs its own --data directory (the default holds the recipe's J)")
    if needs_out and args.out is None:
        parser.error("train --J needs --out (sdlib/data holds the shipped models)")
    RECIPES[args.name] = with_coupling(RECIPES[args.name], args.J)


def _file_params(path: str) -> dict:
    """The ``params`` record a data file was written with (generation recipe, relabelling ensemble)."""
    import h5py

    with h5py.File(path, "r") as h5:
        return json.loads(h5.attrs["params"])


def _check_coupling(paths, physics: dict) -> None:
    """Refuse data generated at another J than the recipe's (e.g. a --J run pointed at the default data)."""
    for p in paths:
        J = _file_params(p).get("physics", {}).get("J")
        if J is not None and abs(J - physics["J"]) > 1e-12:
            raise SystemExit(f"{p} was generated at J = {J}, the recipe asks for J = {physics['J']} (use --J / --data)")


def _ensemble(physics: dict) -> dict:
    """``{"mu": μ}`` (grand canonical) or ``{"filling": f}`` (canonical), whichever the recipe holds."""
    return {k: physics[k] for k in ("mu", "filling") if k in physics}


def build_model(physics: dict) -> SDModel:
    lat = getattr(lattice, physics["kind"])(physics["L"])
    return SDModel(lat, t=physics["t"], J=physics["J"], kT=physics["kT"], **_ensemble(physics))


def grand_canonical_model(physics: dict, mu: float, kT: float) -> SDModel:
    """The recipe's lattice, t and J with the electrons at fixed ``mu`` and temperature ``kT``."""
    return relabelled_model(physics, {"mu": mu}, kT)


def relabelled_model(physics: dict, ensemble: dict, kT: float) -> SDModel:
    """The recipe's lattice, t and J with ``ensemble`` (``{"mu": μ}`` or ``{"filling": f}``) at ``kT``."""
    return build_model({k: v for k, v in physics.items() if k not in ("mu", "filling")} | ensemble | {"kT": kT})


def uniform_configurations(n_sites: int, n: int, seed: int) -> torch.Tensor:
    """``[n, N, 3]`` independent uniform random unit spins (the initial states of the quenches)."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, n_sites, 3, generator=g, dtype=torch.float64)
    return s / s.norm(dim=-1, keepdim=True)


def random_configurations(n_sites: int, n: int, seed: int) -> torch.Tensor:
    """``[n, N, 3]``: a third uniform random, a third noisy FM, a third noisy Néel/120°-like states.

    Noisy states are S ∝ S0 + w·g with Gaussian g and amplitude w uniform in [0.3, 1.5].
    """
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, n_sites, 3, generator=g, dtype=torch.float64)
    k = torch.arange(n)
    base = torch.zeros(n, n_sites, 3, dtype=torch.float64)
    base[..., 2] = 1.0
    sign = torch.where(torch.arange(n_sites) % 2 == 0, 1.0, -1.0).to(torch.float64)
    stag = k % 3 == 2
    base[stag, :, 2] = sign  # staggered along the site index (Néel on even L square lattices)
    w = 0.3 + 1.2 * torch.rand(n, 1, 1, generator=g, dtype=torch.float64)
    noisy = k % 3 != 0
    s[noisy] = base[noisy] + w[noisy] * s[noisy]
    return s / s.norm(dim=-1, keepdim=True)


def generate(name: str, data_dir: str, shard: tuple[int, int] = (0, 1), extra: bool = False) -> None:
    """Write every missing file of the recipe; with ``shard=(k, n)`` only the jobs j with j % n == k.
    ``extra=True``: only the recipe's ``extra_quench`` trajectories (``extra_quench_s<seed>.h5``,
    which ``_split`` gives to the training set)."""
    from sdlib.io import TrajectoryWriter, generate_quench_data

    rec = RECIPES[name]
    out_dir = os.path.join(data_dir, name)
    os.makedirs(out_dir, exist_ok=True)
    model = build_model(rec["physics"])
    ed = ExactSolver(model)
    N = model.n_sites
    q, prefix = rec["quench"], "quench"
    if extra:
        if "extra_quench" not in rec:
            raise SystemExit(f"the recipe of {name} has no extra_quench trajectories")
        q, prefix = rec["quench"] | rec["extra_quench"], "extra_quench"
    mine = lambda j: j % shard[1] == shard[0]  # noqa: E731
    for j, (seed, kT) in enumerate(zip(q["seeds"], q["bath_kT"])):
        path = os.path.join(out_dir, f"{prefix}_s{seed}.h5")
        if os.path.exists(path) or not mine(j):
            continue
        t0 = time.time()
        generate_quench_data(ed, N, path, n_steps=q["n_steps"], every=q["every"], dt=q["dt"], alpha=q["alpha"],
                             kT=kT, seed=seed, params={"physics": rec["physics"], "kind": "quench"})
        print(f"{path}: {time.time() - t0:.0f} s", flush=True)
    if extra:
        return
    jobs = [("random", seed, n, random_configurations) for seed, n in rec["random"]["files"]]
    jobs += [("uniform", seed, n, uniform_configurations) for seed, n in rec["random"].get("uniform", [])]
    for j, (kind, seed, n, make) in enumerate(jobs, start=len(q["seeds"])):
        path = os.path.join(out_dir, f"{kind}_s{seed}.h5")
        if os.path.exists(path) or not mine(j):
            continue
        t0 = time.time()
        spins = make(N, n, seed)
        with TrajectoryWriter(path, N, {"physics": rec["physics"], "kind": kind, "seed": seed}) as w:
            for k in range(n):
                out = ed(spins[k])
                w.append(k, 0.0, spins[k], out.fields, out.energy)
        print(f"{path}: {time.time() - t0:.0f} s", flush=True)


def _pending(name: str, data_dir: str, to_dir: str):
    """(source path, target path, trajectory) of every data file not yet relabelled into ``<to>/<name>/``."""
    from sdlib.io import read_trajectory

    os.makedirs(os.path.join(to_dir, name), exist_ok=True)
    for f in sorted(os.listdir(os.path.join(data_dir, name))):
        src, dst = os.path.join(data_dir, name, f), os.path.join(to_dir, name, f)
        if f.endswith(".h5") and not os.path.exists(dst):
            yield src, dst, read_trajectory(src)


def relabel(name: str, data_dir: str, to_dir: str, ensemble: dict, kT: float) -> None:
    """Same configurations, fields and energy in another ensemble (``{"mu": μ}``: Ω, or ``{"filling": f}``:
    E or F) at electron temperature ``kT``; existing files are kept."""
    from sdlib.io import TrajectoryWriter

    ed = ExactSolver(relabelled_model(RECIPES[name]["physics"], ensemble, kT))
    for src, dst, tr in _pending(name, data_dir, to_dir):
        params = tr["params"] | {"relabelled_from": src, "ensemble": ensemble | {"kT": kT}}
        with TrajectoryWriter(dst, tr["spins"].shape[1], params) as w:
            for k in range(0, len(tr["step"]), 8):
                out = ed(tr["spins"][k:k + 8])
                for j in range(out.energy.shape[0]):
                    w.append(int(tr["step"][k + j]), float(tr["time"][k + j]), tr["spins"][k + j], out.fields[j], out.energy[j])
        print(dst, flush=True)


def label_grand(name: str, data_dir: str, to_dir: str, mus: list, kT: float) -> None:
    """Grand-canonical labels (Ω, fields, N) of every stored configuration at each μ of ``mus``
    (one diagonalisation per configuration serves all μ) into ``<to>/<name>/``; existing files are kept."""
    from sdlib.io import write_grand_labels

    ed = ExactSolver(grand_canonical_model(RECIPES[name]["physics"], mus[0], kT))
    for src, dst, tr in _pending(name, data_dir, to_dir):
        parts = [ed.grand_labels(tr["spins"][k:k + 8], mus, kT) for k in range(0, len(tr["step"]), 8)]
        labels = {key: torch.cat([p[key] for p in parts]) for key in ("energy", "fields", "number")}
        labels |= {"spins": tr["spins"], "mu": parts[0]["mu"]}
        write_grand_labels(dst, labels, tr["params"] | {"relabelled_from": src, "ensemble": {"mu": mus, "kT": kT}})
        print(dst, flush=True)


# Network and optimiser settings of the shipped models (float32 training, float64 evaluation).
TRAIN = dict(hidden=(64, 64), activation="silu", quench_stride=1, epochs=40, batch_size=4, lr=3e-3, lr_final=1e-4,
             target="torque", energy_weight_final=1.0, energy_start=3, energy_ramp=3, patience=8, seed=0)


def _split(name: str, data_dir: str):
    """Quench trajectories split by file into train/val/test (each of val and test gets ~20 %);
    the random configurations all train. Validation and test then measure what the dynamics
    needs: fields along quench trajectories the network never saw."""
    from sdlib.training import split_by_trajectory

    files = sorted(os.path.join(data_dir, name, f) for f in os.listdir(os.path.join(data_dir, name)) if f.endswith(".h5"))
    quench = [f for f in files if os.path.basename(f).startswith("quench")]
    tr, va, te = split_by_trajectory(quench, val=0.2, test=0.2, seed=TRAIN["seed"])
    return tr + [f for f in files if f not in quench], va, te


def _data_ensemble(paths, physics: dict) -> dict:
    """The electrons the data were labelled with: ``{"mu" or "filling", "kT"}`` of the recipe, or
    the ensemble ``relabel`` recorded in the files (which must all agree)."""
    found = {json.dumps(_file_params(p).get("ensemble"), sort_keys=True) for p in paths}
    if len(found) != 1:
        raise SystemExit(f"the data files mix electron ensembles: {sorted(found)}")
    return json.loads(found.pop()) or _ensemble(physics) | {"kT": physics["kT"]}


def _is_grand_labels(path: str) -> bool:
    import h5py

    with h5py.File(path, "r") as h5:
        return "mu" in h5 and "number" in h5


def train(name: str, data_dir: str, epochs=None, max_minutes: float = 15.0, out_dir: str | None = None,
          cutoff: float | None = None, check_dir: str | None = None, phase_cutoff: float | None = None,
          init_from: str | None = None, lr: float | None = None, lr_final: float | None = None) -> None:
    from sdlib.descriptors import Descriptor
    from sdlib.nn import MLForceField
    from sdlib.provenance import provenance
    from sdlib.training import FieldDataset, GrandDataset, evaluate
    from sdlib.training import train as fit

    rec = RECIPES[name]
    cfg = dict(TRAIN, **rec.get("train", {}))
    cfg["epochs"] = epochs or cfg["epochs"]
    if cutoff is not None:
        cfg["cutoff"] = cutoff
    if phase_cutoff is not None:
        cfg["phase_cutoff"] = phase_cutoff
    phys = rec["physics"]
    lat = getattr(lattice, phys["kind"])(phys["L"])
    tr, va, te = _split(name, data_dir)
    _check_coupling(tr + va + te, phys)
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
    torch.manual_seed(cfg["seed"])
    desc = Descriptor(lat, **{k: cfg[k] for k in ("cutoff", "phase_cutoff") if k in cfg})
    ff = MLForceField(desc, hidden=cfg["hidden"], activation=cfg["activation"], physics=physics, mu_input=grand)
    if init_from is not None:  # start as a trained model whose features are among these (sdlib.warmstart)
        cfg |= _warm_start(ff, init_from, sets[0], physics) | {"energy_start": 0, "energy_ramp": 1}
    ff = ff.to(torch.float32)
    ckpt = os.path.join(data_dir, name, "train.ckpt")
    hist = fit(ff, sets[0], sets[1], epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
               lr_final=cfg["lr_final"], target=cfg["target"], energy_weight_final=cfg["energy_weight_final"],
               energy_start=cfg["energy_start"], energy_ramp=cfg["energy_ramp"],
               patience=cfg["patience"], checkpoint=ckpt, seed=cfg["seed"], max_minutes=max_minutes,
               normalize=init_from is None, keep_initial=init_from is not None)
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
        "errors": errors, "wall_s_training": round(hist["wall_s"], 1),
        **provenance(),  # commit, versions, hardware, date
    }
    out = os.path.join(out_dir or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sdlib", "data"),
                       name)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    print(ff.save(out), flush=True)
    os.remove(ckpt)


def _warm_start(ff, path: str, train_set, physics: dict) -> dict:
    """Fit ``ff``'s normalisation on ``train_set``, then set it to compute what the model at ``path``
    computes; refuses a model of other physics. Returns the provenance entry of the start."""
    from sdlib.nn import MLForceField
    from sdlib.training import fit_normalization
    from sdlib.warmstart import warm_start

    old = MLForceField.load(path, lattice=getattr(lattice, physics["lattice"])(physics["L"]))
    for key in ("t", "J", "filling"):
        if old.physics.get(key) != physics.get(key):
            raise SystemExit(f"--init-from {path}: trained for {key} = {old.physics.get(key)}, this run has "
                             f"{physics.get(key)}")
    fit_normalization(ff, train_set)
    warm_start(ff, old)
    return {"init_from": {"file": os.path.basename(path), "weights_sha256": old.weights_sha256,
                          "cutoff": old.descriptor.cutoff, "n_features": old.descriptor.n_features}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["generate", "train", "relabel", "label-grand"])
    p.add_argument("name", choices=sorted(RECIPES))
    p.add_argument("--data", default="data/models", help="directory of the training data (default data/models)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=15.0)
    p.add_argument("--cutoff", type=float, default=None, help="descriptor cutoff (default: the recipe's, else the lattice's)")
    p.add_argument("--phase-cutoff", type=float, default=None,
                   help="lean descriptor: relative phases only with copies within this radius (Descriptor phase_cutoff)")
    p.add_argument("--init-from", default=None,
                   help="train: start as this saved model (its features must be among the new descriptor's; sdlib.warmstart)")
    p.add_argument("--lr", type=float, default=None, help="train: first learning rate (default: the recipe's)")
    p.add_argument("--lr-final", type=float, default=None, help="train: last learning rate (default: the recipe's)")
    p.add_argument("--out", default=None, help="directory the trained model is written to (default sdlib/data)")
    p.add_argument("--mu", type=float, help="relabel: chemical potential of the grand-canonical ensemble")
    p.add_argument("--check", default=None, help="train: canonical labels of the same frames, to judge a mu-input model")
    p.add_argument("--filling", type=float, help="relabel: filling of the canonical ensemble (instead of --mu)")
    p.add_argument("--mus", help="label-grand: grid of chemical potentials as lo:hi:K (K values, ends included)")
    p.add_argument("--kT", type=float, default=0.0, help="relabel: electron temperature (default 0)")
    p.add_argument("--to", default="data/models-gc", help="relabel: directory of the relabelled data")
    p.add_argument("--J", type=float, default=None, help="exchange coupling instead of the recipe's (needs its own --data; train needs --out)")
    p.add_argument("--extra", action="store_true", help="generate: the recipe's extra quenches (training only)")
    p.add_argument("--shard", default="0/1", help="generate only the jobs j with j %% n == k, as k/n (parallel runs)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    apply_coupling(p, args, needs_out=args.stage == "train")
    if args.stage == "generate":
        k, n = (int(v) for v in args.shard.split("/"))
        if not 0 <= k < n:
            p.error(f"--shard must be k/n with 0 <= k < n, got {args.shard!r}")
        generate(args.name, args.data, (k, n), extra=args.extra)
    elif args.stage == "label-grand":
        try:
            lo, hi, k = args.mus.split(":")
            mus = torch.linspace(float(lo), float(hi), int(k), dtype=torch.float64).tolist()
        except (AttributeError, ValueError):
            p.error(f"label-grand needs --mus lo:hi:K, got {args.mus!r}")
        if not args.kT > 0:
            p.error(f"label-grand needs --kT > 0, got {args.kT}")
        label_grand(args.name, args.data, args.to, mus, args.kT)
    elif args.stage == "relabel":
        if (args.mu is None) == (args.filling is None):
            p.error("relabel needs exactly one of --mu or --filling")
        relabel(args.name, args.data, args.to, {"mu": args.mu} if args.filling is None else {"filling": args.filling},
                args.kT)
    else:
        train(args.name, args.data, epochs=args.epochs, max_minutes=args.max_minutes, out_dir=args.out,
              cutoff=args.cutoff, check_dir=args.check, phase_cutoff=args.phase_cutoff, init_from=args.init_from,
              lr=args.lr, lr_final=args.lr_final)


if __name__ == "__main__":
    main()
