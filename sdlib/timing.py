"""Timing of force-field calls, interleaved so that ratios survive a loaded machine.

``interleaved(calls, repeat)`` runs every callable once per round, in the given order, for
``repeat`` rounds after one untimed warm-up round, and returns the times (seconds) of each.
Within a round the calls follow each other, so a change of the machine's load affects all of them
alike and the ratio of their medians is meaningful even when the absolute times are not.

Two clocks: ``"wall"`` (``time.perf_counter``, what a user waits) and ``"cpu"``
(``time.process_time``, CPU seconds of this process summed over its threads). The CPU time does
not count the time the process waits while other programs run, so with one torch thread it
estimates the wall time of an idle machine; with several threads it is their total work.
``clock="both"`` returns ``{name: {"wall": [...], "cpu": [...]}}``. CUDA work is synchronised
before and after each call, so a GPU time is the time to a finished result (use the wall clock
there: the CPU clock does not see GPU work). Only the standard library and torch are used;
nothing here knows any physics.
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


def _timed(fn) -> tuple[float, float]:
    synchronize()
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    synchronize()
    return time.perf_counter() - w0, time.process_time() - c0


CLOCKS = ("wall", "cpu", "both")


def interleaved(calls: dict, repeat: int = 3, warmup: bool = True, clock: str = "wall") -> dict:
    """Times ``{name: [seconds] * repeat}`` of ``calls`` (``{name: fn()}``), round-robin.

    ``warmup=True`` runs one untimed round first (caches, lazy initialisation, CUDA kernels).
    ``clock``: "wall", "cpu" or "both" (module docstring).
    """
    if not (isinstance(repeat, int) and not isinstance(repeat, bool) and repeat >= 1):
        raise ValueError(f"repeat must be an integer >= 1, got {repeat!r}")
    if not calls or not all(callable(fn) for fn in calls.values()):
        raise ValueError("calls must be a non-empty dict of name -> callable without arguments")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    if warmup:
        for fn in calls.values():
            fn()
    times = {name: {"wall": [], "cpu": []} for name in calls}
    for _ in range(repeat):
        for name, fn in calls.items():
            wall, cpu = _timed(fn)
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
    return times if clock == "both" else {name: t[clock] for name, t in times.items()}


def median(times: dict) -> dict:
    """Medians of the result of ``interleaved``: ``{name: seconds}`` (or ``{name: {clock: seconds}}``)."""
    return {name: median(ts) if isinstance(ts, dict) else statistics.median(ts) for name, ts in times.items()}
