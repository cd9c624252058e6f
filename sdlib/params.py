"""Checks of a chapter's parameters: one call in the cell after the one tagged ``parameters``.

    from sdlib.params import check_parameters, integer, number, one_of, text, flag

    params = check_parameters(globals(), {
        "L": integer(6, 2048, even=True),
        "dt": number(0, 0.2, lo_open=True),
        "precision": one_of("float64", "float32"),
        "out_dir": text("a folder (str), or empty"),
        "use_shipped_model": flag(),
    })

Each rule says what a parameter may be and says it in words; every named parameter is checked and
all bad ones are reported together in one ``ValueError``, one clause per parameter:
``"L must be an even integer in [6, 2048], got 31"`` (clauses joined by ``"; "``). The return value
is the checked values as a plain dict in the order of the spec (what a chapter records as its
parameters). Bounds that depend on other parameters go in a second call, after those are checked.

Conventions: ``bool`` is neither an integer nor a number here (``True`` is not 1); numbers must be
finite; intervals include their ends unless ``lo_open`` / ``hi_open``; a bound ``None`` is absent.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Allowed", "check_parameters", "integer", "number", "one_of", "text", "flag"]


@dataclass(frozen=True)
class Allowed:
    """A rule: ``accepts(value)`` says whether a value is allowed, ``text`` says what is, in words."""

    accepts: Callable[[object], bool]
    text: str


def _fmt(x) -> str:
    """A bound as a reader writes it: integers in full, other numbers with ``%g``."""
    return str(x) if isinstance(x, numbers.Integral) else f"{x:g}"


def _interval_text(lo, hi, lo_open: bool, hi_open: bool) -> str:
    """``"in [lo, hi]"``, ``">= lo"``, ``"< hi"`` ... (empty without bounds)."""
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_fmt(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_fmt(hi)}"
    return ""


def _inside(v, lo, hi, lo_open: bool, hi_open: bool) -> bool:
    above = lo is None or (v > lo if lo_open else v >= lo)
    below = hi is None or (v < hi if hi_open else v <= hi)
    return above and below


def _words(kind: str, lo, hi, lo_open: bool, hi_open: bool, note: str | None) -> str:
    interval = _interval_text(lo, hi, lo_open, hi_open)
    words = f"{kind} {interval}" if interval else kind
    return f"{words} ({note})" if note else words


def integer(lo=None, hi=None, *, even: bool = False, note: str | None = None) -> Allowed:
    """An integer (not a bool) with ``lo <= value <= hi``, even if asked; ``note`` adds a reason."""
    def accepts(v) -> bool:
        ok = isinstance(v, numbers.Integral) and not isinstance(v, bool)
        return ok and _inside(v, lo, hi, False, False) and not (even and v % 2)
    return Allowed(accepts, _words("an even integer" if even else "an integer", lo, hi, False, False, note))


def number(lo=None, hi=None, *, lo_open: bool = False, hi_open: bool = False, note: str | None = None) -> Allowed:
    """A finite real number (int or float, not a bool) in the interval from ``lo`` to ``hi``."""
    def accepts(v) -> bool:
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        return ok and _inside(v, lo, hi, lo_open, hi_open)
    kind = "a number" if lo is not None or hi is not None else "a finite number"
    return Allowed(accepts, _words(kind, lo, hi, lo_open, hi_open, note))


def one_of(*options) -> Allowed:
    """One of ``options`` (compared by type and value, so ``1`` is not ``True``)."""
    if not options:
        raise ValueError("one_of needs at least one allowed value")
    shown = [repr(o) for o in options]
    words = " or ".join(shown) if len(shown) <= 2 else "one of " + ", ".join(shown)
    return Allowed(lambda v: any(type(v) is type(o) and v == o for o in options), words)


def text(what: str = "a string") -> Allowed:
    """A ``str`` (a path, a name; may be empty); ``what`` says what it is for the message."""
    return Allowed(lambda v: isinstance(v, str), what)


def flag() -> Allowed:
    """``True`` or ``False`` (not 0 or 1)."""
    return Allowed(lambda v: isinstance(v, bool), "True or False")


def check_parameters(values: Mapping, spec: Mapping[str, Allowed]) -> dict:
    """Check ``values[name]`` against ``spec[name]`` for every name of ``spec``; return the checked values.

    ``values`` is usually ``globals()`` of a chapter. Raises one ``ValueError`` naming every bad or
    missing parameter with what it must be and what it is (module docstring).
    """
    problems = []
    for name, rule in spec.items():
        if not isinstance(rule, Allowed):
            raise TypeError(f"the rule for {name} must be an Allowed (integer(...), number(...), ...), got {rule!r}")
        if name not in values:
            problems.append(f"{name} must be set ({rule.text})")
        elif not rule.accepts(values[name]):
            problems.append(f"{name} must be {rule.text}, got {values[name]!r}")
    if problems:
        raise ValueError("; ".join(problems))
    return {name: values[name] for name in spec}
