"""Wall-clock timing of force-field calls, interleaved so that ratios survive a loaded machine.

``interleaved(calls, repeat)`` runs every callable once per round, in the given order, for
``repeat`` rounds after one untimed warm-up round, and returns the wall times (seconds) of each.
Within a round the calls are seconds apart, so a change of the machine's load affects all of them
alike and the ratio of their medians is meaningful even when the absolute times are not. CUDA work
is synchronised before and after each call, so a GPU time is the time to a finished result.
Only the standard library and torch are used; nothing here knows any physics.
"""
from __future__ import annotations

import statistics
import time

import torch

__all__ = ["interleaved", "median", "synchronize"]


def synchronize() -> None:
    """Wait for all queued CUDA work (a no-op without a GPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _wall(fn) -> float:
    synchronize()
    t0 = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - t0


def interleaved(calls: dict, repeat: int = 3, warmup: bool = True) -> dict:
    """Wall times ``{name: [seconds] * repeat}`` of ``calls`` (``{name: fn()}``), round-robin.

    ``warmup=True`` runs one untimed round first (caches, lazy initialisation, CUDA kernels).
    """
    if not (isinstance(repeat, int) and not isinstance(repeat, bool) and repeat >= 1):
        raise ValueError(f"repeat must be an integer >= 1, got {repeat!r}")
    if not calls or not all(callable(fn) for fn in calls.values()):
        raise ValueError("calls must be a non-empty dict of name -> callable without arguments")
    if warmup:
        for fn in calls.values():
            fn()
    times = {name: [] for name in calls}
    for _ in range(repeat):
        for name, fn in calls.items():
            times[name].append(_wall(fn))
    return times


def median(times: dict) -> dict:
    """``{name: median seconds}`` of the result of ``interleaved``."""
    return {name: statistics.median(ts) for name, ts in times.items()}
