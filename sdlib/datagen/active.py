"""Active rounds: seed → (train a committee → explore → select → label) × rounds, errors written down.

Layout of a work directory (every step skips what exists, so a killed run resumes)::

    heldout/labels.h5            frames of fresh quenches (seeds never used for training), exact
                                 labels in the recipe's own ensemble (``label.label_fixed``)
    round0/frames.h5, labels/    seed: frames of quenches driven by ``driver`` (exact solver, or a
                                 trained network) at the recipe's frame times + ordered configurations
    round<r>/committee/          the committee trained on the labels of rounds 0..r
    round<r+1>/frames.h5, labels/   frames chosen by that committee from its own quenches
    rounds.json                  per round: labelled frames, held-out torque errors of every member
                                 (member 0 is the fixed small network) and of the committee mean

The exploration quenches are driven by member 0 of the committee (the first usable one); every candidate frame is scored
by the whole committee (``select.disagreement``). Rounds cost: labels ~ one ``eigh`` of 2N × 2N per
frame; exploration ~ network evaluations only.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..electrons.ed import ExactSolver
from ..io import atomic_write
from .committee import heldout_errors, train_committee
from .label import chunk_files, default_device, label_fixed, label_pool, write_frames
from .quench import quench_frames
from .select import disagreement, ordered_configurations, select_frames

__all__ = ["make_driver", "seed", "seed_data", "make_heldout", "explore", "active_round", "run_active", "baseline", "read_rounds",
           "record"]

HELDOUT_SEED, SEED_SEED, EXPLORE_SEED, BASELINE_SEED = 900_000, 100_000, 10_000, 500_000


def make_driver(recipe, driver: str = "exact", device=None):
    """The force field of seed and held-out quenches: "exact" (``ExactSolver`` in the recipe's
    ensemble; it runs where the spins are), "pretrained" (the shipped model of the recipe's lattice)
    or a saved model's path (networks in float32 on ``device``, default CUDA when present)."""
    from ..nn import MLForceField

    if driver == "exact":
        return ExactSolver(recipe.dynamics_model())
    if driver == "pretrained":
        name = {"square": "square-double-exchange", "triangular": "triangular-tetrahedral"}[recipe.kind]
        ff = MLForceField.pretrained(name, lattice=recipe.lattice(), dtype=torch.float32)
    else:
        ff = MLForceField.load(driver, lattice=recipe.lattice(), dtype=torch.float32)
    return ff.to(default_device(device))


def _origin(n: int, rnd: int, frames: dict | None = None, source: str = "seed", score=None) -> dict:
    nan = torch.full((n,), float("nan"), dtype=torch.float64)
    return {"round": torch.full((n,), rnd), "time": frames["time"] if frames else torch.zeros(n),
            "bath_kT": frames["bath_kT"] if frames else nan, "score": nan if score is None else score,
            "source": [source] * n}


def _cat(*parts) -> dict:
    return {k: (sum((p[k] for p in parts), []) if k == "source" else torch.cat([p[k] for p in parts]))
            for k in parts[0]}


def seed(recipe, work, driver, device=None, n_quenches: int | None = None, log=print) -> Path:
    """Round 0: frames of ``driver``-driven quenches plus ``recipe.ordered`` ordered configurations."""
    device = default_device(device)
    path = Path(work) / "round0" / "frames.h5"
    if not path.exists():
        fr = quench_frames(driver, recipe, SEED_SEED, n_quenches, device=device)
        ordered, names = ordered_configurations(recipe.lattice(), recipe.ordered, seed=SEED_SEED)
        origin = _cat(_origin(len(fr["spins"]), 0, fr), _origin(len(ordered), 0) | {"source": names})
        write_frames(path, torch.cat([fr["spins"], ordered]), origin, {"driver": type(driver).__name__})
        log(f"{path}: {len(origin['source'])} frames")
    return path


def make_heldout(recipe, work, driver, device=None, n_quenches: int = 1, log=print) -> Path:
    """Held-out frames: ``n_quenches`` fresh quenches per bath temperature, labelled in the recipe's ensemble."""
    device = default_device(device)
    path = Path(work) / "heldout" / "labels.h5"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fr = quench_frames(driver, recipe, HELDOUT_SEED, n_quenches, device=device)
        label_fixed(fr["spins"], path, recipe, device=device, params={"driver": type(driver).__name__})
        log(f"{path}: {len(fr['spins'])} frames")
    return path


def explore(recipe, committee, work, rnd: int, device=None, n_quenches: int | None = None, log=print,
            deadline: float | None = None) -> Path:
    """Frames for round ``rnd`` (≥ 1): quenches driven by member 0, scored by the committee, selected
    (``deadline``: no further bath temperature is started after it, see ``quench_frames``)."""
    device = default_device(device)
    path = Path(work) / f"round{rnd}" / "frames.h5"
    if path.exists():
        return path
    t0 = time.perf_counter()
    committee = _usable(committee, recipe, device)
    fr = quench_frames(committee[0], recipe, EXPLORE_SEED * rnd, n_quenches, device=device,
                       dtype=torch.float32, deadline=deadline)
    scores = disagreement(committee, fr["spins"].to(device=device, dtype=torch.float32)).double().cpu()
    idx, uniform = select_frames(scores, recipe.select, recipe.uniform_fraction, seed=rnd)
    chosen = {k: v[idx] for k, v in fr.items()}
    origin = _origin(len(idx), rnd, chosen, score=scores[idx])
    origin["source"] = ["uniform" if u else "explore" for u in uniform.tolist()]
    ordered, names = ordered_configurations(recipe.lattice(), recipe.ordered, seed=EXPLORE_SEED * rnd)
    ord_scores = disagreement(committee, ordered.to(device=device, dtype=torch.float32)).double().cpu() \
        if len(ordered) else torch.zeros(0, dtype=torch.float64)
    origin = _cat(origin, _origin(len(ordered), rnd, score=ord_scores) | {"source": names})
    stats = {"candidates": len(scores), "bath_kT": sorted(set(fr["bath_kT"].tolist())), "score_max": scores.max().item(), "score_median": scores.median().item(),
             "selected_min_top": scores[idx[~uniform]].min().item() if (~uniform).any() else None}
    write_frames(path, torch.cat([chosen["spins"], ordered]), origin, {"selection": stats})
    log(f"{path}: {len(origin['source'])} frames of {len(scores)} candidates, {time.perf_counter() - t0:.0f} s, {stats}")
    return path


def _usable(committee, recipe, device) -> list:
    """The members that can be used at the recipe's ensemble (a μ-input network must reach N_e)."""
    probe = ordered_configurations(recipe.lattice(), 1, seed=0)[0].to(device=device, dtype=torch.float32)
    ok, err = [], None
    for ff in committee:
        try:
            ff(probe)
            ok.append(ff)
        except ValueError as e:
            err = e
    if len(ok) < 2:
        raise ValueError(f"fewer than two committee members can be used at the recipe's ensemble: {err}; "
                         "train longer (epochs) or warm-start them (init_from)")
    return ok


def read_rounds(work) -> list:
    p = Path(work) / "rounds.json"
    return json.loads(p.read_text()) if p.exists() else []


def record(recipe, work, out, log=print) -> dict:
    """The committable summary of an active run in ``out`` (the datasets stay in ``work``):
    ``active.json`` with the recipe, each round's entry of ``rounds.json`` with its held-out errors
    and spread-vs-error calibration recomputed from the saved committee (``heldout_errors``), the
    origin of every labelled frame per round (seed, explored: selected or uniform, ordered), and
    ``baseline.json`` where it exists. Returns what it wrote."""
    import h5py

    from ..nn import MLForceField

    work, out = Path(work), Path(out)
    rounds = []
    for entry in read_rounds(work):
        rnd = entry["round"]
        members = [MLForceField.load(p.with_suffix(""), recipe.lattice())
                   for p in sorted((work / f"round{rnd}" / "committee").glob("member*.json"))]
        origin = {}  # what was labelled in this round, by the source of each frame
        for chunk_path in chunk_files(work / f"round{rnd}" / "labels"):
            with h5py.File(chunk_path, "r") as h5:
                for name in h5["source"][...]:
                    origin[name.decode()] = origin.get(name.decode(), 0) + 1
        rounds.append(entry | {"heldout_torque_rel": heldout_errors(members, work / "heldout" / "labels.h5"),
                               "frames_by_origin": origin})
        log(f"recorded round {rnd}: {len(members)} members, {origin}")
    base = work / "baseline.json"
    summary = {"recipe": recipe.to_dict(), "rounds": rounds,
               "baseline": json.loads(base.read_text()) if base.exists() else None}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "active.json", mode="w") as fh:
        json.dump(summary, fh, indent=1)
    return summary


def _record(work, entry: dict) -> None:
    rounds = [r for r in read_rounds(work) if r.get("round") != entry["round"]] + [entry]
    with atomic_write(Path(work) / "rounds.json", mode="w") as fh:
        json.dump(sorted(rounds, key=lambda r: r["round"]), fh, indent=1)


def active_round(recipe, work, rnd: int, device=None, shard=(0, 1), chunk: int = 16, explore_next: bool = True,
                 log=print, **train_kw) -> dict:
    """Train the committee of round ``rnd`` on the labels of rounds 0..rnd, write its held-out errors
    to ``rounds.json``, then (``explore_next``) explore, select and label round ``rnd + 1``."""
    device = default_device(device)
    work = Path(work)
    paths = [p for r in range(rnd + 1) for p in chunk_files(work / f"round{r}" / "labels")]
    committee = train_committee(recipe, paths, work / f"round{rnd}" / "committee", device=device, log=log, **train_kw)
    errors = heldout_errors(committee, work / "heldout" / "labels.h5")
    entry = {"round": rnd, "labelled_frames": sum(_count(p) for p in paths), "heldout_torque_rel": errors}
    _record(work, entry)
    log(f"round {rnd}: {entry}")
    if explore_next:
        frames = explore(recipe, committee, work, rnd + 1, device=device, log=log)
        label_pool(frames, work / f"round{rnd + 1}" / "labels", recipe, shard=shard, chunk=chunk, device=device, log=log)
    return entry


def _count(path) -> int:
    import h5py

    with h5py.File(path, "r") as h5:
        return int(h5["index"].shape[0])


def baseline(recipe, work, rounds: int, driver, device=None, chunk: int = 16, log=print, **train_kw) -> dict:
    """The comparison of ``rounds.json``: member 0 alone trained on as many frames as the last round
    had, all from ``driver``-driven quenches (round 0 plus fresh ones); written to ``baseline.json``."""
    device = default_device(device)
    work = Path(work)
    last = {r["round"]: r for r in read_rounds(work)}[rounds]
    seed_files = chunk_files(work / "round0" / "labels")
    missing = last["labelled_frames"] - sum(_count(p) for p in seed_files)
    path = work / "baseline" / "frames.h5"
    if missing > 0 and not path.exists():
        per = len(recipe.bath_kT) * len(recipe.frame_times)
        fr = quench_frames(driver, recipe, BASELINE_SEED, -(-missing // per), device=device)
        fr = {k: v[:missing] for k, v in fr.items()}
        write_frames(path, fr["spins"], _origin(missing, 0, fr, source="baseline"), {"driver": type(driver).__name__})
    extra = []
    if missing > 0:
        label_pool(path, work / "baseline" / "labels", recipe, chunk=chunk, device=device, log=log)
        extra = chunk_files(work / "baseline" / "labels")
    net = train_committee(recipe, seed_files + extra, work / "baseline" / "network", members=[0], device=device,
                          log=log, **train_kw)
    entry = {"labelled_frames": last["labelled_frames"], "source": "driver quenches only",
             "heldout_torque_rel": heldout_errors(net, work / "heldout" / "labels.h5")["members"][0],
             "active_member0": last["heldout_torque_rel"]["members"][0]}
    with atomic_write(work / "baseline.json", mode="w") as fh:
        json.dump(entry, fh, indent=1)
    log(f"baseline: {entry}")
    return entry


def seed_data(recipe, work, driver="exact", device=None, chunk: int = 16, n_seed_quenches=None, log=print) -> Path:
    """The held-out frames and round 0 (seed quenches, ordered configurations), labelled; resumable.
    Returns the folder of round 0's labels."""
    device = default_device(device)
    drv = make_driver(recipe, driver, device) if isinstance(driver, str) else driver
    make_heldout(recipe, work, drv, device=device, log=log)
    frames = seed(recipe, work, drv, device=device, n_quenches=n_seed_quenches, log=log)
    out = Path(work) / "round0" / "labels"
    label_pool(frames, out, recipe, chunk=chunk, device=device, log=log)
    return out


def run_active(recipe, work, rounds: int, driver="exact", device=None, chunk: int = 16, n_seed_quenches=None,
               log=print, **train_kw) -> list:
    """Seed, label, then ``rounds`` active rounds and a last committee on everything; returns ``rounds.json``."""
    device = default_device(device)
    seed_data(recipe, work, driver, device=device, chunk=chunk, n_seed_quenches=n_seed_quenches, log=log)
    for r in range(rounds + 1):
        active_round(recipe, work, r, device=device, chunk=chunk, explore_next=r < rounds, log=log, **train_kw)
    return read_rounds(work)
