"""Provenance of a computation and atomic JSON results, for production runs and shipped models.

``provenance()`` says what produced a result: the git commit of the checkout (and whether it had
uncommitted changes), the versions of Python, torch and sdlib, the hardware (CPU model and core
count, torch threads, GPU name if one is used) and the date. ``write_json(path, obj)`` writes a
JSON file atomically (a killed run leaves the old file or the new one, never half of one).
Only the standard library and torch are used; nothing here knows any physics.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from .io import atomic_write

__all__ = ["provenance", "write_json", "hardware"]

_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str | torch.device = "cpu") -> dict:
    """CPU model, core count, torch threads and, for a CUDA ``device``, the GPU name."""
    hw = {"machine": platform.machine(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
          "torch_threads": torch.get_num_threads(), "device": str(device)}
    if torch.device(device).type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return hw


def _checkout() -> dict:
    """``{"commit": HEAD, "dirty": uncommitted changes to tracked files}``; None where git cannot tell."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": _git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


# The checkout whose code this process runs: taken when this module is first imported (a chapter
# imports it in its first code cell), not when the record is written at the end of a long run.
_AT_IMPORT = _checkout()


def provenance(device: str | torch.device = "cpu", **extra) -> dict:
    """JSON-ready record: commit, dirty flag, versions, hardware, date, plus ``extra`` entries.

    ``commit`` and ``dirty`` describe the checkout when this module was imported; if the checkout
    has changed since (commits or edits made while a run was going), ``checkout_at_end`` holds
    the one found now.
    """
    from . import __version__

    now = _checkout()
    rec = {**_AT_IMPORT, "sdlib": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
           "hardware": hardware(device), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if now != _AT_IMPORT:
        rec["checkout_at_end"] = now
    return json.loads(json.dumps(rec | extra))


def _finite(obj, where: str = "") -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"write_json: {where or 'value'} is {obj}; JSON results must be finite")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _finite(v, f"{where}[{i}]")


def write_json(path, obj) -> Path:
    """Write ``obj`` (dicts, lists, str, int, finite floats) to ``path`` atomically; return the path."""
    _finite(obj)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=1) + "\n"
    with atomic_write(path, "w") as f:
        f.write(text)
    return path
