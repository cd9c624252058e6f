"""Candidate force fields of a study, compared on one active run: held-out error and cost per site.

Which network a study ships is a measurement, not a guess: every candidate (a recipe variant —
another cutoff, descriptor or width) is trained as member 0 on *all* the labels an active run has
gathered (``round*/labels`` and ``baseline/labels`` of its work directory; labels are on the whole
lattice, so one data set serves every cutoff), in ``<work>/candidates/<name>/`` (resumable: a
finished candidate is loaded, a killed one resumes from its checkpoint). :func:`measure` gives its
relative torque error on the run's held-out frames — all of them and per window of quench time
(early / middle / late thirds of the recipe's frame times) — and its inference cost in µs per site
and evaluation on this machine; :func:`record_candidates` writes the comparison chapter 03 reads.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from ..io import atomic_write
from ..nn import MLForceField
from ..training import FieldDataset
from .committee import _rel, train_committee
from .label import chunk_files

__all__ = ["candidate_paths", "train_candidate", "heldout_times", "measure", "record_candidates"]

LABEL_DIRS = ("round*/labels", "baseline/labels")


def candidate_paths(work) -> list:
    """Every label chunk of the active run in ``work`` (all rounds, then the baseline's)."""
    work = Path(work)
    dirs = [d for pattern in LABEL_DIRS for d in sorted(work.glob(pattern))]
    paths = [p for d in dirs for p in chunk_files(d)]
    if not paths:
        raise ValueError(f"work = {work} holds no label chunks ({', '.join(LABEL_DIRS)}): run an active round first")
    return paths


def train_candidate(recipe, work, name: str, *, init_from=None, device=None, log=print, **train_kw) -> MLForceField:
    """Member 0 of ``recipe`` trained on :func:`candidate_paths` of ``work``, saved in
    ``<work>/candidates/<name>/`` (``train_committee``: ``init_from`` warm start, ``train_kw`` such as
    ``epochs`` and ``max_minutes``)."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a plain directory name, got {name!r}")
    out = Path(work) / "candidates" / name
    return train_committee(recipe, candidate_paths(work), out, members=[0], init_from=init_from, device=device,
                           log=log, **train_kw)[0]


def heldout_times(recipe, n_frames: int) -> torch.Tensor:
    """Quench time of each held-out frame, in the order ``make_heldout`` wrote them (per bath
    temperature, one quench, the recipe's frame times); ``n_frames`` must match that order."""
    times = torch.tensor(recipe.frame_times, dtype=torch.float64)
    if n_frames % len(times):
        raise ValueError(f"{n_frames} held-out frames are not a whole number of quenches of "
                         f"{len(times)} frame times: not written by make_heldout with this recipe")
    return times.repeat(n_frames // len(times))


def _windows(recipe) -> dict:
    ft = list(recipe.frame_times)
    k = len(ft)
    cuts = [ft[: max(1, k // 3)], ft[max(1, k // 3): max(2, 2 * k // 3)], ft[max(2, 2 * k // 3):]]
    return {label: (min(c), max(c)) for label, c in zip(("early", "middle", "late"), cuts) if c}


@torch.no_grad()
def measure(stem, recipe, work, *, L_cost: int = 64, repeats: int = 3, batch: int = 4) -> dict:
    """Held-out relative torque error of the saved network ``stem`` (float64, all frames and per
    time window) and its cost: µs per site of one evaluation (fast path, float32 and float64, one
    configuration of ``L_cost`` × ``L_cost`` evaluated again, so a fixed-filling network starts its
    μ* search at the right cell; median of ``repeats``; this machine's current threads)."""
    data = FieldDataset(Path(work) / "heldout" / "labels.h5")
    ff64 = MLForceField.load(stem, lattice=recipe.lattice())
    fields = torch.cat([ff64(data.spins[k:k + batch]).fields for k in range(0, len(data), batch)])

    def rel(mask):  # over the frames of mask
        return _rel(data.spins[mask], fields[mask], data.fields[mask])

    times = heldout_times(recipe, len(data))
    windows = {label: {"t": [lo, hi], "frames": int(((times >= lo) & (times <= hi)).sum()),
                       "torque_rel": rel((times >= lo) & (times <= hi))}
               for label, (lo, hi) in _windows(recipe).items()}
    cost = {}
    for dtype in (torch.float32, torch.float64):
        big = MLForceField.load(stem, lattice=recipe.replace(L=L_cost).lattice(), dtype=dtype)
        spins = torch.nn.functional.normalize(torch.randn(big.n_sites, 3, generator=torch.Generator().manual_seed(0),
                                                          dtype=dtype), dim=-1)
        big(spins)  # warm-up
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            big(spins)
            runs.append(time.perf_counter() - t0)
        cost[str(dtype).removeprefix("torch.")] = sorted(runs)[len(runs) // 2] / big.n_sites * 1e6
    return {"heldout_torque_rel": rel(slice(None)), "heldout_frames": len(data), "windows": windows,
            "us_per_site": cost, "cost_L": L_cost, "threads": torch.get_num_threads()}


def _networks(work: Path) -> dict:
    """The run's own member 0 of its last round and its baseline network, then every candidate."""
    rounds = sorted(work.glob("round*/committee/member0.json"), key=lambda p: int(p.parent.parent.name[5:]))
    found = {f"{rounds[-1].parent.parent.name} member 0": rounds[-1]} if rounds else {}
    if (work / "baseline" / "network" / "member0.json").exists():
        found["baseline"] = work / "baseline" / "network" / "member0.json"
    found |= {p.parent.name: p for p in sorted(work.glob("candidates/*/member0.json"))}
    return {name: p.with_suffix("") for name, p in found.items()}


def record_candidates(work, out, log=print, **measure_kw) -> dict:
    """``out/candidates.json``: the networks of the active run in ``work`` — member 0 of its last
    round, its baseline, and every finished candidate in ``<work>/candidates/`` — each with its
    cutoffs and widths, descriptor size, training provenance (its recipe is in it) and
    :func:`measure` (``measure_kw``: e.g. ``L_cost``). Returns what it wrote."""
    from .recipes import Recipe

    work, out = Path(work), Path(out)
    rows = {}
    for name, stem in _networks(work).items():
        cfg = json.loads(stem.with_suffix(".json").read_text())
        prov = cfg["provenance"]
        recipe = Recipe(**prov["recipe"])
        rows[name] = {"network": str(stem), "cutoff": recipe.cutoff, "phase_cutoff": recipe.phase_cutoff,
                      "hidden": list(recipe.hidden), "n_features": cfg["n_features"],
                      "weights_sha256": cfg["weights_sha256"], "frames": prov.get("frames"),
                      "best_epoch": prov.get("best_epoch"), "stopped": prov.get("stopped"),
                      "train_wall_s": prov.get("wall_s"), "init_from": prov.get("init_from")} | measure(stem, recipe, work, **measure_kw)
        log(f"{name}: held-out {rows[name]['heldout_torque_rel']:.4f}, "
            f"{rows[name]['us_per_site']['float32']:.1f} µs/site (float32)")
    summary = {"work": str(work), "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
               "networks": rows}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "candidates.json", mode="w") as fh:
        json.dump(summary, fh, indent=1)
    return summary
