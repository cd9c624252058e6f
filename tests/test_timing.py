"""Interleaved timing: round-robin order, one warm-up round, parameter checks."""
import time

import pytest

from sdlib.timing import interleaved, median


def test_round_robin_order_and_warmup():
    log = []
    calls = {"a": lambda: log.append("a"), "b": lambda: log.append("b")}
    times = interleaved(calls, repeat=3)
    assert log == ["a", "b"] * 4  # one warm-up round, then three timed rounds
    assert set(times) == {"a", "b"} and all(len(t) == 3 and min(t) >= 0 for t in times.values())
    log.clear()
    interleaved(calls, repeat=2, warmup=False)
    assert log == ["a", "b"] * 2


def test_times_measure_the_call():
    times = median(interleaved({"sleep": lambda: time.sleep(0.02), "none": lambda: None}, repeat=3))
    assert times["sleep"] >= 0.02 > times["none"]


def test_cpu_clock_does_not_count_sleeping():
    """A sleeping call waits (wall time) without working (CPU time); "both" gives the two clocks."""
    both = median(interleaved({"sleep": lambda: time.sleep(0.05)}, repeat=2, clock="both"))
    assert both["sleep"]["wall"] >= 0.05 > 10 * both["sleep"]["cpu"]
    cpu = interleaved({"sleep": lambda: time.sleep(0.05)}, repeat=2, clock="cpu")
    assert len(cpu["sleep"]) == 2 and max(cpu["sleep"]) < 0.005
    with pytest.raises(ValueError, match="clock"):
        interleaved({"a": lambda: None}, clock="gpu")


@pytest.mark.parametrize("repeat", [0, 1.5, True])
def test_bad_repeat(repeat):
    with pytest.raises(ValueError, match="repeat"):
        interleaved({"a": lambda: None}, repeat=repeat)


def test_bad_calls():
    with pytest.raises(ValueError, match="calls"):
        interleaved({}, repeat=1)
    with pytest.raises(ValueError, match="calls"):
        interleaved({"a": 3}, repeat=1)
