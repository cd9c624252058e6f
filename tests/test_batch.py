"""Tests of sdlib.batch: papermill sweeps of a tiny chapter, locally and on a Dask cluster.

Every executed run starts a kernel (a few seconds), so the sweeps here are small: the CLI sweep
runs 2 ok + 2 failing points, the re-run executes only the 2 failing ones again, the Dask sweep
1 ok + 1 failing point. Failing points stop in the chapter's first cells and cost little.
"""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdlib import batch

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "sweep_fixture.ipynb"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def square_bonds(L):
    """Nearest-neighbour bonds of an L x L periodic square lattice: 2 per site."""
    return 2 * L * L


def read_summary(out):
    with open(out / batch.SUMMARY_FILE, newline="") as f:
        return {r["run_id"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def cli_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "sweep"
    cmd = [sys.executable, "-m", "sdlib.batch", str(FIXTURE), "--out", str(out),
           "-p", "a", "1.0", "-1", "-p", "b", "1", "2", "--workers", "2", "--no-progress"]
    proc = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=240)
    return out, proc, read_summary(out)


# ------------------------------------------------------------------ no kernel needed
def test_record_merges_atomically_and_rejects_non_scalars(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    batch.record(E=-1.5, n=3)
    merged = batch.record(name="neel", ok=True, n=4)
    on_disk = json.loads((tmp_path / batch.RESULTS_FILE).read_text())
    assert on_disk == merged == {"E": -1.5, "n": 4, "name": "neel", "ok": True}
    assert [p.name for p in tmp_path.iterdir()] == [batch.RESULTS_FILE]  # no temp file left
    for bad in ([1.0], None, {"x": 1}, 1j):
        with pytest.raises(ValueError, match="energy_list"):
            batch.record(good=1.0, energy_list=bad)
    assert json.loads((tmp_path / batch.RESULTS_FILE).read_text()) == on_disk
    with pytest.raises(ValueError, match="column of the sweep summary"):
        batch.record(status="ok")


def test_parse_value_reads_json_scalars():
    cases = {"2": 2, "2.0": 2.0, "-1e-3": -1e-3, "true": True, "False": False,
             "heun": "heun", '"2"': "2", "1/2": "1/2"}
    for text, expected in cases.items():
        value = batch.parse_value(text)
        assert value == expected and type(value) is type(expected), text
    for bad in ("null", "[1, 2]", '{"a": 1}'):
        with pytest.raises(ValueError, match="int, float, bool or str"):
            batch.parse_value(bad)


def test_run_id_is_readable_safe_deterministic_and_distinct():
    assert batch.run_id({"mu": -1.0, "J": 2.0}) == "J=2.0_mu=-1.0"
    assert batch.run_id({"method": "heun", "L": 8}) == "L=8_method=heun"
    points = [{"x": 1}, {"x": 1.0}, {"x": "1"}, {"x": True}, {"x": "a/b"}, {"x": "a-b"},
              {"x": "a" * 200}, {"x": "a" * 201}]
    ids = [batch.run_id(p) for p in points]
    assert len(set(ids)) == len(ids)
    assert ids == [batch.run_id(dict(p)) for p in points]
    for rid in ids:
        assert len(rid) <= batch.MAX_ID and all(c.isalnum() or c in "._+=-" for c in rid), rid


def test_unknown_parameter_fails_without_executing(tmp_path):
    rows = batch.sweep(FIXTURE, tmp_path, {"a": [1.0], "c": [1, 2, 2]}, progress=False)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    for row in rows:
        assert "'c'" in row["error"] and "a, b, fail" in row["error"]
        assert row["error"].startswith("ValueError")
    assert not list(tmp_path.glob("*.ipynb"))
    assert set(read_summary(tmp_path)) == {r["run_id"] for r in rows}


def test_bad_sweep_arguments_raise_valueerror(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        batch.sweep(FIXTURE, tmp_path, {"a": [1.0]}, workers=0)
    with pytest.raises(ValueError, match="non-empty list"):
        batch.sweep(FIXTURE, tmp_path, {"a": []})
    with pytest.raises(ValueError, match="notebook"):
        batch.sweep(tmp_path / "missing.ipynb", tmp_path, {"a": [1.0]})


# ------------------------------------------------------------------ executed sweeps
def test_cli_runs_the_product_and_records_results(cli_sweep):
    out, proc, rows = cli_sweep
    assert proc.returncode == 1, proc.stderr  # two points fail
    expected = {batch.run_id({"a": a, "b": b}) for a in (1.0, -1) for b in (1, 2)}
    assert set(rows) == expected
    for b in (1, 2):
        row = rows[batch.run_id({"a": 1.0, "b": b})]
        assert row["status"] == "ok" and row["error"] == "", row
        assert int(row["L"]) == b + 2
        assert int(row["n_bonds"]) == square_bonds(b + 2)
        assert float(row["a_squared"]) == pytest.approx(1.0)
        assert float(row["wall_time_s"]) > 0
        assert (out / f"{row['run_id']}.ipynb").is_file()


def test_cli_failing_runs_keep_the_chapter_message(cli_sweep):
    out, proc, rows = cli_sweep
    for b in (1, 2):
        row = rows[batch.run_id({"a": -1, "b": b})]
        assert row["status"] == "failed"
        assert row["error"] == "ValueError: a must be > 0, got a=-1"
        assert row["n_bonds"] == ""
        assert row["run_id"] in proc.stderr


def test_rerun_skips_ok_runs_and_saves_after_each_run(cli_sweep, monkeypatch):
    out, _, before = cli_sweep
    ok = [rid for rid, r in before.items() if r["status"] == "ok"]
    failed = [rid for rid, r in before.items() if r["status"] == "failed"]
    mtimes = {rid: (out / f"{rid}.ipynb").stat().st_mtime_ns for rid in before}
    writes, write = [], batch._write_summary
    monkeypatch.setattr(batch, "_write_summary", lambda *a: (write(*a), writes.append(1)))
    rows = batch.sweep(FIXTURE, out, {"a": [1.0, -1], "b": [1, 2]}, workers=2, progress=False)
    assert len(writes) == 1 + len(failed)  # once before, then after every finished run
    for rid in ok:
        assert (out / f"{rid}.ipynb").stat().st_mtime_ns == mtimes[rid]  # not executed again
    for rid in failed:
        assert (out / f"{rid}.ipynb").stat().st_mtime_ns > mtimes[rid]  # failed runs retried
    by_id = {r["run_id"]: r for r in rows}
    for rid in ok:
        assert by_id[rid]["status"] == "ok"
        assert by_id[rid]["n_bonds"] == square_bonds(by_id[rid]["b"] + 2)
        assert by_id[rid]["wall_time_s"] == float(before[rid]["wall_time_s"])
    assert read_summary(out).keys() == before.keys()


def test_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        rows = batch.sweep(FIXTURE, tmp_path, {"b": [3], "fail": [False, True]},
                           scheduler=cluster.scheduler_address, progress=False)
    ok, failed = rows
    assert ok["status"] == "ok" and ok["n_bonds"] == square_bonds(5) and ok["L"] == 5
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: failure requested by fail=True"
    assert read_summary(tmp_path)[ok["run_id"]]["n_bonds"] == str(square_bonds(5))
