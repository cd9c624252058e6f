"""Generate the training data of the shipped models and train them.

Usage (from the repository root)::

    python scripts/make_models.py generate square-double-exchange [--data data/models]
    python scripts/make_models.py train square-double-exchange [--data data/models] [--epochs N]
    python scripts/make_models.py generate triangular-tetrahedral
    python scripts/make_models.py train triangular-tetrahedral

``generate`` runs exact-diagonalisation LLG quenches from random spins into baths at several
temperatures (one HDF5 trajectory per seed) and adds random configurations (uniform random and
noisy ferromagnetic / antiferromagnetic ones), all under ``<data>/<name>/`` (``data/`` is not
tracked by git). Files that already exist are kept, so an interrupted run continues where it stopped.
``train`` fits an ``MLForceField`` to those files, split by trajectory, and writes the model and its
provenance record to ``sdlib/data/<name>.{safetensors,json}``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sdlib import ExactSolver, SDModel, lattice  # noqa: E402

# Physics and data-generation recipe of each shipped model.
RECIPES = {
    "square-double-exchange": dict(
        physics=dict(kind="square", L=16, t=1.0, J=6.0, filling=0.485, kT=0.0),
        quench=dict(dt=0.05, alpha=0.5, n_steps=80, every=1, seeds=[101, 102, 103, 104],
                    bath_kT=[0.0, 0.01, 0.02, 0.05]),
        random=dict(files=[(201, 24), (202, 24)]),
    ),
    "triangular-tetrahedral": dict(
        physics=dict(kind="triangular", L=12, t=1.0, J=2.0, filling=0.25, kT=0.0),
        quench=dict(dt=0.05, alpha=0.5, n_steps=200, every=1, seeds=[101, 102, 103, 104, 105, 106],
                    bath_kT=[0.0, 0.005, 0.01, 0.02, 0.05, 0.0]),
        random=dict(files=[(201, 40), (202, 40)]),
    ),
}


def build_model(physics: dict) -> SDModel:
    lat = getattr(lattice, physics["kind"])(physics["L"])
    return SDModel(lat, t=physics["t"], J=physics["J"], filling=physics["filling"], kT=physics["kT"])


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


def generate(name: str, data_dir: str) -> None:
    from sdlib.io import TrajectoryWriter, generate_quench_data

    rec = RECIPES[name]
    out_dir = os.path.join(data_dir, name)
    os.makedirs(out_dir, exist_ok=True)
    model = build_model(rec["physics"])
    ed = ExactSolver(model)
    N = model.n_sites
    q = rec["quench"]
    for seed, kT in zip(q["seeds"], q["bath_kT"]):
        path = os.path.join(out_dir, f"quench_s{seed}.h5")
        if os.path.exists(path):
            continue
        t0 = time.time()
        generate_quench_data(ed, N, path, n_steps=q["n_steps"], every=q["every"], dt=q["dt"], alpha=q["alpha"],
                             kT=kT, seed=seed, params={"physics": rec["physics"], "kind": "quench"},
                             checkpoint_every=20)
        print(f"{path}: {time.time() - t0:.0f} s", flush=True)
    for seed, n in rec["random"]["files"]:
        path = os.path.join(out_dir, f"random_s{seed}.h5")
        if os.path.exists(path):
            continue
        t0 = time.time()
        spins = random_configurations(N, n, seed)
        with TrajectoryWriter(path, N, {"physics": rec["physics"], "kind": "random", "seed": seed}, mode="w") as w:
            for k in range(n):
                out = ed(spins[k])
                w.append(k, 0.0, spins[k], out.fields, out.energy)
        print(f"{path}: {time.time() - t0:.0f} s", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["generate", "train"])
    p.add_argument("name", choices=sorted(RECIPES))
    p.add_argument("--data", default="data/models", help="directory of the training data (default data/models)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=15.0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.stage == "generate":
        generate(args.name, args.data)
    else:
        train(args.name, args.data, epochs=args.epochs, max_minutes=args.max_minutes)


if __name__ == "__main__":
    main()
