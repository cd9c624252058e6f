"""Exact labels of chosen frames: batched, on the frames' device, in resumable shards.

A *pool* file (:func:`write_frames`) holds the frames to label and each frame's origin: ``spins
[M, N, 3]``, ``round [M]`` (0 = seed), ``time [M]`` (LLG time of the frame, 0 for constructed
ones), ``bath_kT [M]``, ``score [M]`` (committee disagreement, NaN where none was computed) and
``source [M]`` ("seed", "explore", "uniform", "fm-droplets", ...). :func:`label_pool` cuts the pool
into chunks of ``chunk`` consecutive frames; chunk c is labelled by shard ``k`` of ``n`` when
c mod n = k, and written whole and atomically to ``<out>/c<c>.h5``. A chunk file that exists is
done: a killed run resumes at the first missing chunk, and any division into shards (or none)
makes the same files, so shards union to the whole pool with no frame twice.

Chunk files are grand-canonical label files (``sdlib.io.read_grand_labels``; ``GrandDataset``
reads them): ``spins`` (float64), ``mu [K]``, ``energy [m, K]`` (Ω), ``number [m, K]`` (float64)
and ``fields [m, K, N, 3]`` (float32: the labels are exact to ~1e-7 relative, far below any
network's error, at half the size), plus ``index [m]`` (frame numbers in the pool), the origin
arrays and ``params`` (recipe, solver, device). Labels come from ONE ``eigh`` per frame:
``ExactSolver.grand_labels(spins, recipe.mus, recipe.kT)``.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from ..electrons.ed import ExactSolver
from ..io import TrajectoryWriter, atomic_write

__all__ = ["write_frames", "read_frames", "label_pool", "chunk_files", "labelled_index", "label_fixed"]

ORIGIN = ("round", "time", "bath_kT", "score", "source")


def write_frames(path, spins: torch.Tensor, origin: dict, params: dict | None = None) -> Path:
    """Write a pool of frames (module docstring) atomically; ``origin`` holds the ``ORIGIN`` arrays."""
    spins = torch.as_tensor(spins, dtype=torch.float64).cpu()
    m = spins.shape[0]
    arrays = {"round": np.asarray(origin["round"], dtype=np.int64), "time": np.asarray(origin["time"], dtype=float),
              "bath_kT": np.asarray(origin["bath_kT"], dtype=float), "score": np.asarray(origin["score"], dtype=float),
              "source": np.asarray([str(s).encode() for s in origin["source"]], dtype="S32")}
    bad = [k for k, a in arrays.items() if a.shape != (m,)]
    if bad or spins.dim() != 3 or spins.shape[-1] != 3:
        raise ValueError(f"frames need spins [M, N, 3] and origin arrays {list(ORIGIN)} of length M = {m}; bad: {bad}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, mode="w+b") as fh, h5py.File(fh, "w") as h5:
        h5.create_dataset("spins", data=spins.numpy())
        for k, a in arrays.items():
            h5.create_dataset(k, data=a)
        h5.attrs["params"] = json.dumps(params or {})
    return Path(path)


def read_frames(path) -> dict:
    """Spins (float64 tensor), origin arrays (tensors; ``source`` a list of str) and ``params``."""
    with h5py.File(path, "r") as h5:
        out = {k: torch.from_numpy(h5[k][...]) for k in ("spins", "round", "time", "bath_kT", "score")}
        out["source"] = [s.decode() for s in h5["source"][...]]
        out["params"] = json.loads(h5.attrs["params"])
    return out


def chunk_files(out_dir) -> list[Path]:
    """The finished chunk files of a labelling run, in chunk order."""
    return sorted(Path(out_dir).glob("c*.h5"))


def labelled_index(out_dir) -> torch.Tensor:
    """Pool indices of every labelled frame (concatenated over the chunk files)."""
    parts = []
    for p in chunk_files(out_dir):
        with h5py.File(p, "r") as h5:
            parts.append(torch.from_numpy(h5["index"][...]))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def default_device(device=None) -> str:
    """``device``, or CUDA when present, else the CPU: where labels are computed and networks run."""
    return str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")


def parse_shard(shard) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in (shard.split("/") if isinstance(shard, str) else shard))
    except (TypeError, ValueError):
        raise ValueError(f"shard must be k/n with 0 <= k < n, got {shard!r}") from None
    if not 0 <= k < n:
        raise ValueError(f"shard must be k/n with 0 <= k < n, got {shard!r}")
    return k, n


def label_pool(frames_path, out_dir, recipe, shard=(0, 1), chunk: int = 16, device=None,
               max_chunks: int | None = None, deadline: float | None = None, log=print) -> list[Path]:
    """Label this shard's missing chunks of the pool at ``frames_path`` into ``out_dir``; returns the
    chunk files written now. ``device``: where the ``eigh`` runs (default: CUDA when present).
    ``max_chunks`` / ``deadline`` (a ``time.monotonic()`` value): stop after writing that many
    chunks / start no chunk after it (a budgeted run; the rest resumes later)."""
    k, n = parse_shard(shard)
    if not (isinstance(chunk, int) and chunk >= 1):
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    device = default_device(device)
    pool = read_frames(frames_path)
    if pool["spins"].shape[1] != recipe.n_sites:
        raise ValueError(f"{frames_path} holds frames of {pool['spins'].shape[1]} sites; the recipe has {recipe.n_sites}")
    os.makedirs(out_dir, exist_ok=True)
    solver = ExactSolver(recipe.label_model())
    params = {"recipe": recipe.to_dict(), "solver": "ExactSolver.grand_labels", "device": str(device),
              "frames": os.path.basename(os.fspath(frames_path)), "chunk": chunk}
    written, n_chunks = [], math.ceil(pool["spins"].shape[0] / chunk)
    for c in range(k, n_chunks, n):
        path = Path(out_dir) / f"c{c:05d}.h5"
        if path.exists():
            continue
        if (max_chunks is not None and len(written) >= max_chunks) or \
                (deadline is not None and time.monotonic() > deadline):
            break
        t0 = time.perf_counter()
        idx = torch.arange(c * chunk, min((c + 1) * chunk, pool["spins"].shape[0]))
        lab = solver.grand_labels(pool["spins"][idx].to(device), recipe.mus, recipe.kT)
        _write_chunk(path, idx, pool, lab, params)
        written.append(path)
        log(f"{path}: {len(idx)} frames, {time.perf_counter() - t0:.1f} s")
    return written


def _write_chunk(path, idx, pool, lab, params) -> None:
    cpu = {key: v.detach().cpu() for key, v in lab.items()}
    with atomic_write(path, mode="w+b") as fh, h5py.File(fh, "w") as h5:
        h5.create_dataset("spins", data=pool["spins"][idx].numpy())
        h5.create_dataset("mu", data=cpu["mu"].double().numpy())
        h5.create_dataset("energy", data=cpu["energy"].double().numpy())
        h5.create_dataset("number", data=cpu["number"].double().numpy())
        h5.create_dataset("fields", data=cpu["fields"].float().numpy())
        h5.create_dataset("index", data=idx.numpy())
        for key in ("round", "time", "bath_kT", "score"):
            h5.create_dataset(key, data=pool[key][idx].numpy())
        h5.create_dataset("source", data=np.asarray([pool["source"][i].encode() for i in idx.tolist()], dtype="S32"))
        h5.attrs["params"] = json.dumps(params)


def label_fixed(spins: torch.Tensor, path, recipe, device=None, batch: int = 4, params: dict | None = None) -> Path:
    """Exact labels in the recipe's own ensemble (canonical at its filling, or grand at its μ; T_e)
    as a trajectory file (``sdlib.io``; ``FieldDataset`` reads it): the held-out frames on which a
    network is judged as the dynamics uses it. Written whole; an existing file is kept."""
    path = Path(path)
    if path.exists():
        return path
    device = default_device(device)
    solver = ExactSolver(recipe.dynamics_model())
    part = path.with_name(path.name + ".part")
    if part.exists():
        part.unlink()  # an interrupted held-out labelling starts again (it is small)
    with TrajectoryWriter(path, recipe.n_sites, (params or {}) | {"recipe": recipe.to_dict()}) as w:
        for k in range(0, spins.shape[0], batch):
            out = solver(spins[k:k + batch].to(device))
            for j in range(out.energy.shape[0]):
                w.append(k + j, 0.0, spins[k + j], out.fields[j], out.energy[j])
    return path
