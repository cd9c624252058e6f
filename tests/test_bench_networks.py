"""benchmarks/bench_networks.py: every committed triangular network timed against the shipped one."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sdlib import MLForceField, lattice

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_networks  # noqa: E402


def test_measure_times_each_network_against_the_shipped_one(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(bench_networks.RUNS / f"r5z{suffix}", runs / f"r5z{suffix}")
    res = bench_networks.measure(12, 1, "cpu", runs)
    assert list(res["networks"]) == ["shipped", "r5z"]
    ref = MLForceField.load(runs / "r5z", lattice=lattice.triangular(12))
    row = res["networks"]["r5z"]
    assert row["n_features"] == ref.descriptor.n_features and row["cutoff"] == ref.descriptor.cutoff
    assert res["networks"]["shipped"]["float32"]["ratio_to_shipped"] == 1.0
    for dtype in ("float32", "float64"):
        r = row[dtype]
        assert r["cpu_us_per_site"] > 0 and r["ratio_to_shipped"] == pytest.approx(
            r["cpu_us_per_site"] / res["networks"]["shipped"][dtype]["cpu_us_per_site"])
    assert bench_networks.table(res).count("\n| ") == 3  # header + two networks


def test_small_lattice_is_refused_by_name():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_networks.py"), "--L", "8"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "--L must be >= 13" in r.stderr
