"""Batch runs of the book's chapters.

Recording results: a chapter calls ``record(name=value, ...)``; the scalars are merged into
``results.json`` in the notebook's working directory (written atomically), which a sweep reads
after each run.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

__all__ = ["record", "RESULTS_FILE"]

RESULTS_FILE = "results.json"


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def record(directory: str | os.PathLike = ".", **scalars) -> dict:
    """Merge JSON scalars (int, float, bool, str) into ``directory/results.json``; returns all results."""
    for key, value in scalars.items():
        if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            value = value.item()  # numpy / torch scalars
            scalars[key] = value
        if not isinstance(value, (int, float, bool, str)) or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"record: {key} must be a finite int, float, bool or str, got {value!r}")
    path = Path(directory) / RESULTS_FILE
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(scalars)
    _atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
    return data
