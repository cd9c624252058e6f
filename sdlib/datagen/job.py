"""One budgeted active round for an accelerator: seed, label, committee, explore, select, label, committee.

``gpu_round(recipe, work, out, minutes=9)`` runs, inside a wall-clock budget, what ``active``
does step by step — held-out frames, a seed pool (quenches driven by ``driver``: by default the
shipped model of the lattice, whose quenches are cheap; ``"exact"`` for exact-LLG seeds), its
labels, the round-0 committee (each member warm-started from ``init_from`` and trained for a share
of the budget), exploration, selection of ``select`` frames and their labels, and the round-1
committee with its held-out error. Budget marks (fractions of ``minutes``): seed labels end by
0.35, the round-0 members train for a quarter of what is left, no exploration bath temperature
starts after 0.6, round-1 labels end by 0.8, and the round-1 committee gets the rest. Every step
resumes from what ``work`` holds, so a run cut by its budget (or killed) continues when started
again with the same ``work`` (on a device machine: while it is still warm, as the labels stay there).

The label files (~150 kB per 30 × 30 frame) stay in ``work``; ``out`` gets at most three small
files: ``report.json`` (rounds, held-out errors, selection statistics, timings, labelled frames per
hour), ``log.txt`` and ``committee.tar.gz`` (the last committee's models).
"""
from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import torch

from ..io import atomic_write
from .active import active_round, explore, make_driver, make_heldout, read_rounds, seed
from .label import chunk_files, default_device, label_pool, read_frames

__all__ = ["gpu_round"]


def gpu_round(recipe, work, out, minutes: float = 9.0, driver: str = "pretrained", init_from="pretrained",
              device=None, chunk: int = 32, seed_quenches: int = 16, epochs: int = 40, frame_norm: bool = False) -> dict:
    """The budgeted round (module docstring); returns the report written to ``out/report.json``.
    ``frame_norm``: the members weight each frame by the inverse mean square of its torques
    (``sdlib.training.train``), so quiet late-coarsening frames count as much as noisy ones."""
    t_start = time.monotonic()
    deadline = t_start + 60 * minutes
    device = default_device(device)
    work, out = Path(work), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines, times, labelled = [], {}, []

    def log(msg):
        line = f"[{time.monotonic() - t_start:7.1f} s] {msg}"
        lines.append(line)
        print(line, flush=True)

    def left() -> float:
        return deadline - time.monotonic()

    def step(name, fn):
        t0 = time.monotonic()
        result = fn()
        times[name] = round(time.monotonic() - t0, 1)
        return result

    drv = make_driver(recipe, driver, device)
    step("heldout", lambda: make_heldout(recipe, work, drv, device=device, log=log))
    pool = step("seed", lambda: seed(recipe, work, drv, device=device, n_quenches=seed_quenches, log=log))
    label_dir = work / "round0" / "labels"
    labelled += step("label0", lambda: label_pool(pool, label_dir, recipe, chunk=chunk, device=device, log=log,
                                                  deadline=deadline - 0.65 * 60 * minutes))
    train_kw = {"epochs": epochs, "init_from": init_from, "batch_size": 16 if str(device).startswith("cuda") else 4,
                "frame_norm": bool(frame_norm)}
    share = lambda frac: max(0.2, frac * left() / 60 / recipe.committee)  # noqa: E731 minutes per member
    step("round0", lambda: active_round(recipe, work, 0, device=device, chunk=chunk, explore_next=False, log=log,
                                        max_minutes=share(0.25), **train_kw))
    committee = _committee(recipe, work, 0, device)
    frames = step("explore", lambda: explore(recipe, committee, work, 1, device=device, log=log,
                                             deadline=deadline - 0.4 * 60 * minutes))
    labelled += step("label1", lambda: label_pool(frames, work / "round1" / "labels", recipe, chunk=chunk,
                                                  device=device, log=log, deadline=deadline - 0.2 * 60 * minutes))
    if left() > 45 and _complete(frames, work / "round1" / "labels"):
        step("round1", lambda: active_round(recipe, work, 1, device=device, explore_next=False, log=log,
                                            max_minutes=share(0.8), **train_kw))
    report = _report(recipe, work, times, device, time.monotonic() - t_start, sum(_n(p) for p in labelled))
    _write_outputs(out, work, report, lines)
    return report


def _committee(recipe, work, rnd, device):
    from .committee import train_committee

    paths = [p for r in range(rnd + 1) for p in chunk_files(work / f"round{r}" / "labels")]
    return train_committee(recipe, paths, work / f"round{rnd}" / "committee", device=device, log=lambda *_: None)


def _complete(frames, label_dir) -> bool:
    from .label import labelled_index

    return len(labelled_index(label_dir)) == read_frames(frames)["spins"].shape[0]


def _report(recipe, work, times, device, wall, labelled_now) -> dict:
    label_s = times.get("label0", 0) + times.get("label1", 0)
    frames = {f"round{r}": read_frames(work / f"round{r}" / "frames.h5")["params"] for r in (1,)
              if (work / f"round{r}" / "frames.h5").exists()}
    labelled = sum(_n(p) for r in (0, 1) for p in chunk_files(work / f"round{r}" / "labels"))
    dev = torch.cuda.get_device_name() if str(device).startswith("cuda") else "cpu"
    return {"recipe": recipe.to_dict(), "device": dev, "wall_s": round(wall, 1), "step_s": times,
            "labelled_frames": labelled, "labelled_this_run": labelled_now, "selection": frames,
            "rounds": read_rounds(work),
            "labelled_per_hour": round(3600 * labelled_now / label_s) if labelled_now and label_s > 0 else None}


def _n(path) -> int:
    import h5py

    with h5py.File(path, "r") as h5:
        return int(h5["index"].shape[0])


def _write_outputs(out: Path, work: Path, report: dict, lines: list) -> None:
    with atomic_write(out / "report.json", mode="w") as fh:
        json.dump(report, fh, indent=1)
    with atomic_write(out / "log.txt", mode="w") as fh:
        fh.write("\n".join(lines) + "\n")
    last = max((r for r in (0, 1) if (work / f"round{r}" / "committee").exists()), default=None)
    if last is None:
        return
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in sorted((work / f"round{last}" / "committee").glob("member*.*")):
            if p.suffix in (".json", ".safetensors"):
                tar.add(p, arcname=f"round{last}/{p.name}")
    with atomic_write(out / "committee.tar.gz") as fh:
        fh.write(buf.getvalue())
