"""Command line over ``sdlib.datagen``: the studies' active-learning data and the shipped models.

Usage (from the repository root; scripts/README.md has the full recipes)::

    # the studies (sdlib.datagen.recipes: square 30 x 30 T_e = 0.05, triangular 36 x 36 T_e = 0.1)
    python scripts/make_models.py active square --work data/active/square --rounds 2 [--set L=30 ...]
    python scripts/make_models.py label square data/active/square/round1/frames.h5 --to DIR --shard 0/4
    python scripts/make_models.py gpu-round square --work data/active/square --out $OUT [--minutes 9] [--dry-run]
    python scripts/make_models.py candidate square --work data/active/square --name c46 --set cutoff=4.6 [--record DIR]
        [--also WORK2]  (also WORK2's labels: e.g. a --data-only run of the recipe at later frame times)

    # the models shipped in sdlib/data (sdlib.datagen.shipped, shipped_train)
    python scripts/make_models.py generate square-double-exchange [--data data/models] [--shard k/n] [--extra]
    python scripts/make_models.py label-grand square-double-exchange --mus=-6.4:-2.0:12 --kT 0.05 --to data/models-grand-wide
    python scripts/make_models.py relabel square-double-exchange --filling 0.485 --kT 0.05 --to data/models-ct
    python scripts/make_models.py train square-double-exchange --data data/models-grand-wide --check data/models-ct
"""
from __future__ import annotations

import argparse

import torch

from sdlib.datagen import STUDIES, baseline, gpu_round, label_pool, make_driver, record, run_active, seed_data, study
from sdlib.datagen.candidates import record_candidates, train_candidate
from sdlib.datagen.shipped import RECIPES, generate, label_grand, mu_grid, relabel, with_coupling
from sdlib.datagen.shipped_train import train

SHIPPED = ("generate", "train", "relabel", "label-grand")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stage", required=True)
    for stage in ("active", "label", "gpu-round", "candidate"):
        s = sub.add_parser(stage)
        s.add_argument("study", choices=sorted(STUDIES))
        s.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="change a field of the recipe, e.g. L=30, cutoff=3.5, frame_times=0.5,1,2")
        s.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
        s.add_argument("--chunk", type=int, default=16, help="frames per label file (default 16)")
        s.add_argument("--threads", type=int, default=1)
        if stage == "label":
            s.add_argument("frames", help="pool file of frames to label (sdlib.datagen.write_frames)")
            s.add_argument("--to", required=True, help="directory of the label chunks")
            s.add_argument("--shard", default="0/1", help="label only chunks c with c %% n == k, as k/n")
            continue
        s.add_argument("--work", required=True, help="work directory (labels, committees, rounds.json)")
        s.add_argument("--driver", default="pretrained" if stage == "gpu-round" else "exact",
                       help="force field of seed and held-out quenches: exact, pretrained or a model path")
        s.add_argument("--init-from", default="auto", help="warm start of every member: pretrained, a path, none, or "
                       "auto (pretrained where the shipped model has the study's mu-input physics: square; else none)")
        s.add_argument("--epochs", type=int, default=30)
        if stage in ("gpu-round", "candidate"):
            s.add_argument("--frame-norm", action="store_true", help="weight each frame by the inverse mean square "
                           "of its torques: quiet frames (late coarsening) count as much as noisy ones")
        if stage in ("active", "candidate"):
            s.add_argument("--max-minutes", type=float, default=None, help="training minutes per member")
            s.add_argument("--record", default=None, metavar="DIR", help="then write the run's summary to DIR")
        if stage == "candidate":
            s.add_argument("--name", default=None, help="the candidate's directory in WORK/candidates")
            s.add_argument("--frames", type=int, default=None, help="train on this many of the run's frames only")
            s.add_argument("--also", action="append", default=[], metavar="WORK2", help="also train on the labels of "
                           "this work directory (another run of the recipe, e.g. frames of later quench times)")
            s.add_argument("--lr", type=float, default=None, help="first learning rate (default: TRAIN, or WARM)")
            s.add_argument("--lr-final", type=float, default=None, help="last learning rate")
            s.add_argument("--grad-clip", type=float, default=None, help="clip a step's gradient norm at this many "
                           "times the median of the recent steps (sdlib.training.train; default none)")
            s.add_argument("--patience", type=int, default=None, help="stop after this many epochs without a better "
                           "validation loss (default: TRAIN's)")
            s.add_argument("--fm-weight", type=float, default=None, help="loss weight of the sites inside FM "
                           "clusters (>= 3/4 of their bonds FM; default 1: all sites equal)")
            s.add_argument("--seed-quenches", type=int, default=None, help="first make (or complete) the held-out "
                           "frames and round 0 with this many seed quenches per bath, labelled on --device")
            s.add_argument("--data-only", action="store_true", help="make (or complete) the held-out frames and "
                           "round 0, labelled, and stop (no network; --name is then not needed)")
        elif stage == "active":
            s.add_argument("--rounds", type=int, default=2)
            s.add_argument("--seed-quenches", type=int, default=None, help="seed quenches per bath (default: the recipe's)")
            s.add_argument("--baseline", action="store_true", help="also train member 0 on driver quenches only")
        else:
            s.add_argument("--out", required=True, help="directory of the small outputs (<= 3 files)")
            s.add_argument("--minutes", type=float, default=9.0)
            s.add_argument("--dry-run", action="store_true", help="the recipe's 8 x 8 version (Recipe.dry_run)")
    for stage in SHIPPED:
        s = sub.add_parser(stage)
        s.add_argument("name", choices=sorted(RECIPES))
        s.add_argument("--data", default="data/models", help="directory of the training data (default data/models)")
        s.add_argument("--threads", type=int, default=1)
        s.add_argument("--J", type=float, default=None, help="exchange coupling instead of the recipe's (own --data)")
        s.add_argument("--to", default="data/models-gc", help="relabel / label-grand: directory of the new labels")
        s.add_argument("--kT", type=float, default=0.0, help="relabel / label-grand: electron temperature")
        s.add_argument("--mu", type=float, help="relabel: chemical potential of the grand-canonical ensemble")
        s.add_argument("--filling", type=float, help="relabel: filling of the canonical ensemble (instead of --mu)")
        s.add_argument("--mus", help="label-grand: grid of chemical potentials as lo:hi:K (K values, ends included)")
        s.add_argument("--shard", default="0/1", help="generate: only the jobs j with j %% n == k, as k/n")
        s.add_argument("--extra", action="store_true", help="generate: the recipe's extra quenches (training only)")
        s.add_argument("--out", default=None, help="train: directory of the model (default sdlib/data)")
        s.add_argument("--check", default=None, help="train: canonical labels of the same frames (mu-input model)")
        s.add_argument("--init-from", default=None, help="train: start as this saved model (sdlib.warmstart)")
        s.add_argument("--seed", type=int, default=None, help="train: another committee member (needs --out)")
        s.add_argument("--levels", type=int, default=0, help="train: K > 0 levels per site (sdlib.levelhead; "
                       "grand-canonical labels), 0 the plain mu input")
        s.add_argument("--grad-clip", type=float, default=None, help="train: clip a step's gradient norm at this "
                       "many times the median of the recent steps (sdlib.training.train)")
        for opt, typ in (("--epochs", int), ("--max-minutes", float), ("--cutoff", float), ("--phase-cutoff", float),
                         ("--lr", float), ("--lr-final", float)):
            s.add_argument(opt, type=typ, default=15.0 if opt == "--max-minutes" else None)
    return p


def shipped_recipe(args) -> dict:
    """The shipped recipe of ``args.name``, at ``--J`` if given (which needs its own --data and --out)."""
    if args.J is not None and args.data == "data/models":
        raise ValueError("--J needs its own --data directory (the default holds the recipe's J)")
    if args.J is not None and args.stage == "train" and args.out is None:
        raise ValueError("train --J needs --out (sdlib/data holds the shipped models)")
    return RECIPES[args.name] if args.J is None else with_coupling(RECIPES[args.name], args.J)


def run_shipped(args) -> None:
    rec = shipped_recipe(args)
    if args.stage == "generate":
        generate(args.name, args.data, args.shard, extra=args.extra, recipe=rec)
    elif args.stage == "label-grand":
        if not args.kT > 0:
            raise ValueError(f"label-grand needs --kT > 0, got {args.kT}")
        label_grand(args.name, args.data, args.to, mu_grid(args.mus), args.kT, recipe=rec)
    elif args.stage == "relabel":
        if (args.mu is None) == (args.filling is None):
            raise ValueError("relabel needs exactly one of --mu or --filling")
        relabel(args.name, args.data, args.to, {"mu": args.mu} if args.filling is None else {"filling": args.filling},
                args.kT, recipe=rec)
    else:
        train(args.name, args.data, epochs=args.epochs, max_minutes=args.max_minutes, out_dir=args.out,
              cutoff=args.cutoff, check_dir=args.check, phase_cutoff=args.phase_cutoff, init_from=args.init_from,
              lr=args.lr, lr_final=args.lr_final, recipe=rec, seed=args.seed, levels=args.levels,
              grad_clip=args.grad_clip)


AUTO_INIT = {"square": "pretrained"}  # the shipped triangular model is canonical at T_e = 0: no warm start


def run_study(args) -> None:
    recipe = study(args.study).with_settings(args.set)
    if args.stage == "label":
        label_pool(args.frames, args.to, recipe, shard=args.shard, chunk=args.chunk, device=args.device)
        return
    init = {"none": None, "auto": AUTO_INIT.get(recipe.name)}.get(args.init_from, args.init_from)
    if args.stage == "gpu-round":
        recipe = recipe.dry_run() if args.dry_run else recipe.replace(select=1000, quenches=48)
        gpu_round(recipe, args.work, args.out, minutes=args.minutes, driver=args.driver, init_from=init,
                  device=args.device, chunk=args.chunk, epochs=args.epochs, frame_norm=args.frame_norm)
        return
    kw = {"epochs": args.epochs, "init_from": init, "max_minutes": args.max_minutes}
    if args.stage == "candidate":  # member 0 of the recipe on every label of the run, then the comparison
        if args.seed_quenches is not None or args.data_only:  # a fresh machine (a GPU window) makes its own labels
            seed_data(recipe, args.work, args.driver, device=args.device, chunk=args.chunk,
                      n_seed_quenches=args.seed_quenches)
            if args.data_only:
                return
        if args.name is None:
            raise ValueError("candidate needs --name (the network's directory in WORK/candidates) unless --data-only")
        lrs = {k: v for k, v in (("lr", args.lr), ("lr_final", args.lr_final), ("fm_weight", args.fm_weight),
                                 ("grad_clip", args.grad_clip), ("patience", args.patience),
                                 ("frame_norm", args.frame_norm or None)) if v is not None}
        train_candidate(recipe, args.work, args.name, also=args.also, device=args.device, frames=args.frames, **kw,
                        **lrs)
        if args.record:
            record_candidates(args.work, args.record)
        return
    run_active(recipe, args.work, args.rounds, driver=args.driver, device=args.device, chunk=args.chunk,
               n_seed_quenches=args.seed_quenches, **kw)
    if args.baseline:
        baseline(recipe, args.work, args.rounds, make_driver(recipe, args.driver, args.device), device=args.device,
                 chunk=args.chunk, **kw)
    if args.record:
        record(recipe, args.work, args.record)


def main(argv=None) -> None:
    p = parser()
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        run_shipped(args) if args.stage in SHIPPED else run_study(args)
    except ValueError as e:  # the library names the bad setting and its allowed range
        p.error(str(e))


if __name__ == "__main__":
    main()
