"""Files: atomic writes, HDF5 trajectories and grand-canonical label files (quenches that fill them: ``sdlib.datagen``).

Trajectory files (HDF5, h5py) hold appendable, chunked datasets ``spins [T, N, 3]``,
``fields [T, N, 3]``, ``energy [T]``, ``time [T]``, ``step [T]`` and the run's parameters as a JSON
attribute ``params``. A file being written is called ``<path>.part``; every append is flushed, so
a killed writer leaves a readable ``.part`` holding every frame appended before the kill, and a
new writer on the same path continues it. ``close()`` renames it to ``<path>``.

Grand-canonical label files (:func:`write_grand_labels`) hold, for M configurations and K chemical
potentials, ``spins [M, N, 3]``, ``mu [K]``, ``energy [M, K]`` (Ω), ``fields [M, K, N, 3]``,
``number [M, K]`` (electrons) and ``params``; they are written whole and atomically.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch

__all__ = ["atomic_write", "TrajectoryWriter", "read_trajectory", "write_grand_labels", "read_grand_labels", "kept_rows"]


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Write to a temporary file beside ``path`` and move it into place only on success.

    The file gets the permissions ``open`` would give it (0o666 less the umask), not the 0o600 of
    a temporary file, so models and run results written here can be shared.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class TrajectoryWriter:
    """Append snapshots (spins, fields, energy) of one system of ``n_sites`` spins to an HDF5 file."""

    KEYS = ("spins", "fields", "energy", "time", "step")

    def __init__(self, path, n_sites: int, params: dict | None = None, chunk: int = 16):
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; trajectories are never overwritten")
        self.n_sites = int(n_sites)
        if self.part.exists():
            self.h5 = h5py.File(self.part, "a")
            if self.h5["spins"].shape[1] != self.n_sites:
                raise ValueError(f"{self.part} holds {self.h5['spins'].shape[1]} sites, not n_sites={n_sites}")
        else:
            self.h5 = h5py.File(self.part, "w")
            vec = dict(shape=(0, self.n_sites, 3), maxshape=(None, self.n_sites, 3), chunks=(chunk, self.n_sites, 3))
            self.h5.create_dataset("spins", dtype="f8", **vec)
            self.h5.create_dataset("fields", dtype="f8", **vec)
            for k, dt in (("energy", "f8"), ("time", "f8"), ("step", "i8")):
                self.h5.create_dataset(k, shape=(0,), maxshape=(None,), chunks=(max(chunk, 64),), dtype=dt)
            self.h5.attrs["params"] = json.dumps(params or {})
            self.h5.flush()

    def __len__(self) -> int:
        return self.h5["step"].shape[0]

    @property
    def last_step(self) -> int:
        """Step of the last stored frame (-1 if none)."""
        return int(self.h5["step"][-1]) if len(self) else -1

    def append(self, step: int, time: float, spins, fields, energy) -> None:
        values = {
            "spins": np.asarray(torch.as_tensor(spins).detach().cpu(), dtype=np.float64),
            "fields": np.asarray(torch.as_tensor(fields).detach().cpu(), dtype=np.float64),
            "energy": float(energy), "time": float(time), "step": int(step),
        }
        if values["spins"].shape != (self.n_sites, 3) or values["fields"].shape != (self.n_sites, 3):
            raise ValueError(f"spins and fields must have shape [{self.n_sites}, 3]")
        n = len(self)
        for k in self.KEYS:
            ds = self.h5[k]
            ds.resize(n + 1, axis=0)
            ds[n] = values[k]
        self.h5.flush()

    def close(self) -> Path:
        self.h5.close()
        os.replace(self.part, self.path)
        return self.path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.h5.close()  # keep the .part: what was appended stays readable and resumable


def read_trajectory(path) -> dict:
    """All datasets as torch tensors, plus ``params`` (dict). Reads ``path`` or its ``.part``."""
    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".part").exists():
        path = path.with_name(path.name + ".part")
    with h5py.File(path, "r") as h5:
        out = {k: torch.from_numpy(h5[k][...]) for k in TrajectoryWriter.KEYS}
        out["params"] = json.loads(h5.attrs["params"])
    return out


GRAND_KEYS = ("spins", "mu", "energy", "fields", "number")


def write_grand_labels(path, labels: dict, params: dict | None = None) -> Path:
    """Write ``labels`` (the keys of ``GRAND_KEYS``, e.g. from ``ExactSolver.grand_labels`` plus
    ``spins``) to the HDF5 file ``path`` atomically (a killed writer leaves no partial file)."""
    path = Path(path)
    arrays = {k: np.asarray(torch.as_tensor(labels[k]).detach().cpu(), dtype=np.float64) for k in GRAND_KEYS}
    m, k = arrays["spins"].shape[0], arrays["mu"].shape[0]
    shapes = {"energy": (m, k), "number": (m, k), "fields": (m, k) + arrays["spins"].shape[1:]}
    bad = [key for key, shape in shapes.items() if arrays[key].shape != shape]
    if bad or arrays["spins"].ndim != 3:
        raise ValueError(f"grand labels {bad or ['spins']} have wrong shapes for {m} configurations and {k} values of mu")
    with atomic_write(path, mode="w+b") as fh, h5py.File(fh, "w") as h5:
        for key, a in arrays.items():
            h5.create_dataset(key, data=a)
        h5.attrs["params"] = json.dumps(params or {})
    return path


def read_grand_labels(path) -> dict:
    """The arrays of a grand-canonical label file as float64 torch tensors, plus ``params``."""
    with h5py.File(path, "r") as h5:
        missing = [k for k in GRAND_KEYS if k not in h5]
        if missing:
            raise ValueError(f"{path} is not a grand-canonical label file (missing {missing})")
        out = {k: torch.from_numpy(h5[k][...]) for k in GRAND_KEYS}
        out["params"] = json.loads(h5.attrs["params"])
    return out


def kept_rows(path, match: dict, models) -> list:
    """The rows (``"models"``, each with a ``"model"`` name) of an earlier score file ``path`` of the
    models not in ``models``, so that a network added later is scored alone; [] if there is no file.
    The file must hold the same values as ``match`` (what makes two rows comparable: the reference
    quenches, the time they were scored to, ...); a ValueError names those that differ."""
    path = Path(path)
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    differ = {k: (old.get(k), v) for k, v in match.items() if old.get(k) != v}
    if differ:
        raise ValueError(f"{path} was scored with " + ", ".join(f"{k} = {o!r}" for k, (o, _) in differ.items())
                         + ", not " + ", ".join(f"{k} = {v!r}" for k, (_, v) in differ.items())
                         + "; use another --out or score every model again")
    return [r for r in old["models"] if r["model"] not in models]
