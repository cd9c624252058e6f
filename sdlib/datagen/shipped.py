"""The two models shipped in ``sdlib/data``: their recipes and the steps that remade their data.

These are the first, small-cluster networks (square 16 × 16, triangular 12 × 12): exact-LLG
quenches at T_e = 0 from random spins into baths at several temperatures (one HDF5 trajectory per
seed, ``generate``) plus random configurations, all under ``<data>/<name>/``; then ``relabel``
(fields and energy of every stored frame in another ensemble: grand canonical at μ or canonical at
a filling, temperature kT) or ``label_grand`` (Ω, fields and N at every μ of a grid from one
diagonalisation per frame) into ``<to>/<name>/``. Files that exist are kept, so an interrupted run
continues; ``shard=(k, n)`` writes only the jobs j with j mod n = k. Training: ``shipped_train``.
The studies' reference data at T_e > 0 on the reference lattices are made by ``sdlib.datagen.active``.
"""
from __future__ import annotations

import json
import os
import time

import torch

from ..electrons.ed import ExactSolver
from ..io import TrajectoryWriter, read_trajectory, write_grand_labels
from ..lattice import Lattice
from ..model import SDModel, random_spins
from .label import parse_shard
from .quench import generate_quench_data

__all__ = ["RECIPES", "with_coupling", "build_model", "grand_canonical_model", "relabelled_model", "check_coupling",
           "file_params", "random_configurations", "generate", "relabel", "label_grand"]


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
        raise ValueError(f"J must lie in (0, 20] (units of t), got {J}")
    return recipe | {"physics": recipe["physics"] | {"J": float(J)}}


def mu_grid(text: str) -> list:
    """The μ grid "lo:hi:K" (K values, ends included) of ``label_grand``."""
    try:
        lo, hi, k = str(text).split(":")
        return torch.linspace(float(lo), float(hi), int(k), dtype=torch.float64).tolist()
    except (TypeError, ValueError):
        raise ValueError(f"label-grand needs --mus lo:hi:K, got {text!r}") from None


def file_params(path: str) -> dict:
    """The ``params`` record a data file was written with (generation recipe, relabelling ensemble)."""
    import h5py

    with h5py.File(path, "r") as h5:
        return json.loads(h5.attrs["params"])


def check_coupling(paths, physics: dict) -> None:
    """Refuse data generated at another J than the recipe's (e.g. a --J run pointed at the default data)."""
    for p in paths:
        J = file_params(p).get("physics", {}).get("J")
        if J is not None and abs(J - physics["J"]) > 1e-12:
            raise ValueError(f"{p} was generated at J = {J}, the recipe asks for J = {physics['J']} (use --J / --data)")


def _ensemble(physics: dict) -> dict:
    """``{"mu": μ}`` (grand canonical) or ``{"filling": f}`` (canonical), whichever the recipe holds."""
    return {k: physics[k] for k in ("mu", "filling") if k in physics}


def build_model(physics: dict) -> SDModel:
    lat = Lattice(physics["kind"], physics["L"])
    return SDModel(lat, t=physics["t"], J=physics["J"], kT=physics["kT"], **_ensemble(physics))


def grand_canonical_model(physics: dict, mu: float, kT: float) -> SDModel:
    """The recipe's lattice, t and J with the electrons at fixed ``mu`` and temperature ``kT``."""
    return relabelled_model(physics, {"mu": mu}, kT)


def relabelled_model(physics: dict, ensemble: dict, kT: float) -> SDModel:
    """The recipe's lattice, t and J with ``ensemble`` (``{"mu": μ}`` or ``{"filling": f}``) at ``kT``."""
    return build_model({k: v for k, v in physics.items() if k not in ("mu", "filling")} | ensemble | {"kT": kT})


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


def generate(name: str, data_dir: str, shard=(0, 1), extra: bool = False, recipe: dict | None = None) -> None:
    """Write every missing file of the recipe; with ``shard=(k, n)`` (or "k/n") only the jobs j with j % n == k.
    ``extra=True``: only the recipe's ``extra_quench`` trajectories (``extra_quench_s<seed>.h5``,
    which ``_split`` gives to the training set)."""
    rec = recipe or RECIPES[name]
    shard = parse_shard(shard)
    out_dir = os.path.join(data_dir, name)
    os.makedirs(out_dir, exist_ok=True)
    model = build_model(rec["physics"])
    ed = ExactSolver(model)
    N = model.n_sites
    q, prefix = rec["quench"], "quench"
    if extra:
        if "extra_quench" not in rec:
            raise ValueError(f"the recipe of {name} has no extra_quench trajectories")
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
    jobs += [("uniform", seed, n, lambda N, n, s: random_spins(N, (n,), seed=s)) for seed, n in rec["random"].get("uniform", [])]
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
    os.makedirs(os.path.join(to_dir, name), exist_ok=True)
    for f in sorted(os.listdir(os.path.join(data_dir, name))):
        src, dst = os.path.join(data_dir, name, f), os.path.join(to_dir, name, f)
        if f.endswith(".h5") and not os.path.exists(dst):
            yield src, dst, read_trajectory(src)


def relabel(name: str, data_dir: str, to_dir: str, ensemble: dict, kT: float, recipe: dict | None = None) -> None:
    """Same configurations, fields and energy in another ensemble (``{"mu": μ}``: Ω, or ``{"filling": f}``:
    E or F) at electron temperature ``kT``; existing files are kept."""
    ed = ExactSolver(relabelled_model((recipe or RECIPES[name])["physics"], ensemble, kT))
    for src, dst, tr in _pending(name, data_dir, to_dir):
        params = tr["params"] | {"relabelled_from": src, "ensemble": ensemble | {"kT": kT}}
        with TrajectoryWriter(dst, tr["spins"].shape[1], params) as w:
            for k in range(0, len(tr["step"]), 8):
                out = ed(tr["spins"][k:k + 8])
                for j in range(out.energy.shape[0]):
                    w.append(int(tr["step"][k + j]), float(tr["time"][k + j]), tr["spins"][k + j], out.fields[j], out.energy[j])
        print(dst, flush=True)


def label_grand(name: str, data_dir: str, to_dir: str, mus: list, kT: float, recipe: dict | None = None) -> None:
    """Grand-canonical labels (Ω, fields, N) of every stored configuration at each μ of ``mus``
    (one diagonalisation per configuration serves all μ) into ``<to>/<name>/``; existing files are kept."""
    ed = ExactSolver(grand_canonical_model((recipe or RECIPES[name])["physics"], mus[0], kT))
    for src, dst, tr in _pending(name, data_dir, to_dir):
        parts = [ed.grand_labels(tr["spins"][k:k + 8], mus, kT) for k in range(0, len(tr["step"]), 8)]
        labels = {key: torch.cat([p[key] for p in parts]) for key in ("energy", "fields", "number")}
        labels |= {"spins": tr["spins"], "mu": parts[0]["mu"]}
        write_grand_labels(dst, labels, tr["params"] | {"relabelled_from": src, "ensemble": {"mu": mus, "kT": kT}})
        print(dst, flush=True)
