"""scripts/measure_locality.py: a small triangular run writes a complete, resumable result file."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("measure_locality", ROOT / "scripts" / "measure_locality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_small_run_and_resume(tmp_path):
    ml = _script()
    out = tmp_path / "tri.json"
    args = ["triangular", "--sizes", "6", "--samples", "6:2x1", "--kTs", "0,0.1", "--work", str(tmp_path / "w"),
            "--json", str(out)]
    ml.main(args)
    d = json.loads(out.read_text())
    s = d["sizes"]["6"]
    assert s["complete"] and s["samples"] == 6 and s["radii"] == [2.0, 3.0]  # radii capped at L/2
    assert len(s["sensitivity"]) == 2 and all(len(v) == 2 and all(0 < x < 2 for x in v) for v in s["sensitivity"])
    assert d["mu"] == -2.4194 and d["kTs"] == [0.0, 0.1] and d["provenance"]["6"]["commit"]
    ml.main(args)  # everything is in the progress file: the same numbers again
    assert json.loads(out.read_text())["sizes"]["6"]["sensitivity"] == s["sensitivity"]
    with pytest.raises(SystemExit):
        ml.main(["triangular", "--sizes", "6", "--kTs", "0", "--work", str(tmp_path / "w"), "--json", str(out)])
