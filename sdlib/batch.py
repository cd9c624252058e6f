"""Parameter sweeps of the book's chapters with papermill, locally or on a Dask cluster.

Command line (``sweep`` is the same as a Python function)::

    python -m sdlib.batch NOTEBOOK --out DIR -p NAME V1 V2 ... [-p NAME2 ...]
                          [--workers K] [--scheduler ADDRESS] [--timeout S] [--no-progress]

Every point of the Cartesian product of the values is executed by papermill (kernel ``python3``,
working directory ``DIR/<run-id>/``) into ``DIR/<run-id>.ipynb``. Command-line values are JSON
scalars (``json.loads``): ``2`` is an int, ``2.0`` and ``1e-3`` floats, ``true``/``false`` (and
``True``/``False``) bools; other text, or a JSON string such as ``'"2"'``, is a str; ``null``,
lists and objects are rejected. ``--timeout`` is papermill's per-cell timeout (seconds, rounded up).

Run ids are ``name=value`` pairs sorted by name and joined by ``_`` (``J=2.0_mu=-1.0``; values as
JSON, strings bare). If that is not filesystem-safe (outside ``[A-Za-z0-9._+=-]``), ambiguous (a
string that reads as a number) or longer than ``MAX_ID``, it is sanitised, cut and given an
8-hex-digit hash of the parameters, so ids stay deterministic and distinct.

Results: a chapter calls ``sdlib.batch.record(name=value, ...)`` with JSON scalars (int, float,
bool, str); they are merged into ``results.json`` in its working directory (atomic write) and
become columns of ``DIR/summary.csv`` (prefixed ``result_`` if named like a parameter). The
summary has one row per run: ``run_id``, the parameters, ``status`` (``ok``/``failed``),
``error`` (``ExceptionName: message`` from the failing cell, one line), ``wall_time_s``, the
results. It is rewritten atomically after every finished run, and running a sweep again skips
runs already ``ok``. A parameter absent from the notebook's ``parameters`` cell fails its runs
without executing anything. Kernels and Dask workers import the ``sdlib`` that runs the sweep
(its directory is put on ``PYTHONPATH``; Dask workers need it in their environment).

Only the standard library is imported at import time (papermill, tqdm and distributed inside the
functions that use them), so ``import sdlib.batch`` is cheap inside chapters.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import json
import math
import os
import re
import sys
import time
from pathlib import Path

from .io import atomic_write

__all__ = ["record", "sweep", "run_id", "parse_value", "RESULTS_FILE", "SUMMARY_FILE"]

RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.csv"
MAX_ID = 96
_FIXED = ("run_id", "status", "error", "wall_time_s")
_SCALARS = (bool, int, float, str)
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")
_UNQUOTED = re.compile(r"[-+0-9.].*|true|false|True|False|null|NaN|Infinity")  # may read as non-str


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, line endings as given) through :func:`sdlib.io.atomic_write`."""
    with atomic_write(path) as fh:
        fh.write(text.encode())


def record(**values) -> dict:
    """Merge scalar results into ``./results.json`` (atomic write); return the merged dict.

    Only JSON scalars (int, float, bool, str) are accepted; anything else (None, arrays, tensors,
    numpy integers) raises ``ValueError`` naming the key, before anything is written.
    """
    for key, value in values.items():
        if key in _FIXED:
            raise ValueError(f"record: {key!r} is a column of the sweep summary; use another name")
        if not isinstance(value, _SCALARS):
            raise ValueError(f"record: {key}={value!r} is a {type(value).__name__}; only int, "
                             f"float, bool and str are allowed (convert with float() or int())")
    path = Path.cwd() / RESULTS_FILE
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(values)
    _atomic_write(path, json.dumps(merged, indent=1, sort_keys=True) + "\n")
    return merged


def parse_value(text: str):
    """A command-line value as a JSON scalar (int, float, bool), else the text itself as a str."""
    if text in ("True", "False"):
        return text == "True"
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if value is None or not isinstance(value, _SCALARS):
        raise ValueError(f"parameter value {text!r} must be an int, float, bool or str")
    return value


def run_id(params: dict) -> str:
    """Readable, filesystem-safe, deterministic name of one parameter point (see module doc)."""
    fmt = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    text = "_".join(f"{k}={fmt[k]}" for k in sorted(params))
    safe = _UNSAFE.sub("-", text)
    strs = [v for v in params.values() if isinstance(v, str)]
    if safe == text and len(text) <= MAX_ID and not any(_UNQUOTED.fullmatch(v) for v in strs):
        return text
    key = json.dumps(sorted((k, [type(v).__name__, v]) for k, v in params.items()))
    return f"{safe[:MAX_ID - 9]}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def _error_line(exc: BaseException) -> str:
    name, msg = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if name is None:
        name, msg = type(exc).__name__, str(exc)
    return " ".join(f"{name}: {msg}".split())


def _row(rid, params, status, error, wall, results) -> dict:
    row = {"run_id": rid, **params, "status": status, "error": error, "wall_time_s": wall}
    for key, value in results.items():
        row[f"result_{key}" if key in row else key] = value
    return row


def _read_results(workdir: Path) -> dict:
    path = workdir / RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _run_one(notebook: str, out_dir: str, rid: str, params: dict, timeout) -> dict:
    """Execute one parameter point; never raises (errors become a ``failed`` row)."""
    import papermill as pm

    workdir = Path(out_dir) / rid
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / RESULTS_FILE).unlink(missing_ok=True)
    root = str(Path(__file__).resolve().parent.parent)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + [p for p in paths if p])
    start, status, error = time.perf_counter(), "ok", ""
    try:
        pm.execute_notebook(notebook, str(Path(out_dir) / f"{rid}.ipynb"), parameters=params,
                            kernel_name="python3", cwd=str(workdir), progress_bar=False,
                            execution_timeout=None if timeout is None else math.ceil(timeout))
    except Exception as exc:  # noqa: BLE001 - every failure is reported in the summary
        status, error = "failed", _error_line(exc)
    return _row(rid, params, status, error, round(time.perf_counter() - start, 3),
                _read_results(workdir))


def _write_summary(path: Path, rows: dict) -> None:
    def keys(before: bool):
        return [k for r in rows.values() for i, k in enumerate(r)
                if k not in _FIXED and (i < list(r).index("status")) == before]

    fields = ["run_id", *dict.fromkeys(keys(True)), *_FIXED[1:], *dict.fromkeys(keys(False))]
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows.values())
    _atomic_write(path, buf.getvalue())


def _check(notebook: Path, params: dict) -> str:
    """Validate the sweep; return an error for parameters the notebook does not define."""
    import papermill as pm

    if not notebook.is_file() or notebook.suffix != ".ipynb":
        raise ValueError(f"notebook must be an existing .ipynb file, got {str(notebook)!r}")
    for name, values in params.items():
        if not (name.isidentifier() and isinstance(values, (list, tuple)) and values
                and all(isinstance(v, _SCALARS) for v in values)):
            raise ValueError(f"parameter {name!r}: need an identifier and a non-empty list of "
                             f"int, float, bool or str values, got {values!r}")
    allowed = list(pm.inspect_notebook(str(notebook)))
    unknown = [n for n in params if n not in allowed]
    if not unknown:
        return ""
    return (f"ValueError: unknown parameter(s) {', '.join(map(repr, unknown))}; the notebook's "
            f"parameters cell defines: {', '.join(allowed) or '(no cell tagged parameters)'}")


def _executor(workers: int, scheduler):
    """(submit, as_completed, close) for a local process pool or a Dask cluster."""
    if scheduler is None:
        import concurrent.futures as cf

        pool = cf.ProcessPoolExecutor(max_workers=workers)
        return pool.submit, cf.as_completed, lambda: pool.shutdown(cancel_futures=True)
    import distributed

    client = distributed.Client(scheduler) if isinstance(scheduler, str) else scheduler
    submit = lambda fn, *args: client.submit(fn, *args, pure=False)  # noqa: E731
    close = client.close if isinstance(scheduler, str) else (lambda: None)
    return submit, distributed.as_completed, close


def _plan(out: Path, params: dict, unknown: str):
    """Rows of the summary (earlier ones first), this sweep's points and the runs still to do."""
    rows = {}
    if (out / SUMMARY_FILE).exists():
        with (out / SUMMARY_FILE).open(newline="") as f:
            rows = {r["run_id"]: r for r in csv.DictReader(f)}
    combos = itertools.product(*params.values())
    points = {run_id(p): p for p in (dict(zip(params, c)) for c in combos)}
    todo = []
    for rid, point in points.items():
        old = rows.get(rid, {})
        if unknown:
            rows[rid] = _row(rid, point, "failed", unknown, 0.0, {})
        elif old.get("status") == "ok":
            wall = float(old.get("wall_time_s") or 0.0)
            rows[rid] = _row(rid, point, "ok", "", wall, _read_results(out / rid))
        else:
            todo.append((rid, point))
    return rows, points, todo


def sweep(notebook, out_dir, params: dict, workers: int = 1, scheduler=None, timeout=None,
          progress: bool = True) -> list[dict]:
    """Run ``notebook`` at every point of the product of ``params`` (name -> list of values).

    Returns the summary rows of this sweep (product order). ``scheduler``: a Dask scheduler
    address (or a ``distributed.Client``) to run there instead of a local process pool of
    ``workers`` processes; ``timeout``: per-cell timeout in seconds. See the module docstring.
    """
    from tqdm.auto import tqdm

    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds (or None), got {timeout!r}")
    notebook, out = Path(notebook).resolve(), Path(out_dir).resolve()
    unknown = _check(notebook, params)
    out.mkdir(parents=True, exist_ok=True)
    rows, points, todo = _plan(out, params, unknown)
    _write_summary(out / SUMMARY_FILE, rows)
    if not todo:
        return [rows[rid] for rid in points]
    submit, as_completed, close = _executor(workers, scheduler)
    try:
        futures = {submit(_run_one, str(notebook), str(out), rid, p, timeout): (rid, p)
                   for rid, p in todo}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="sweep", unit="run",
                        disable=not progress):
            rid, point = futures[fut]
            try:
                rows[rid] = fut.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker fails only its own run
                rows[rid] = _row(rid, point, "failed", _error_line(exc), 0.0, {})
            _write_summary(out / SUMMARY_FILE, rows)
    finally:
        close()
    return [rows[rid] for rid in points]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sdlib.batch", description=__doc__.split("\n")[0])
    ap.add_argument("notebook")
    ap.add_argument("--out", required=True, help="output directory DIR")
    ap.add_argument("-p", "--param", nargs="+", action="append", default=[],
                    metavar=("NAME", "VALUE"), help="a parameter and its values (repeatable)")
    ap.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    ap.add_argument("--scheduler", default=None, help="Dask scheduler address")
    ap.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    params = {}
    for name, *values in args.param:
        if not values or name in params:
            ap.error(f"-p {name}: give each parameter once, with at least one value")
        try:
            params[name] = [parse_value(v) for v in values]
        except ValueError as exc:
            ap.error(str(exc))
    try:
        rows = sweep(args.notebook, args.out, params, workers=args.workers,
                     scheduler=args.scheduler, timeout=args.timeout, progress=not args.no_progress)
    except ValueError as exc:
        ap.error(str(exc))
    failed = [r for r in rows if r["status"] != "ok"]
    for r in failed:
        print(f"failed {r['run_id']}: {r['error']}", file=sys.stderr)
    print(f"{len(rows) - len(failed)} ok, {len(failed)} failed: {Path(args.out) / SUMMARY_FILE}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
