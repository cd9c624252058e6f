"""Provenance records and atomic JSON results."""
import json
import math

import pytest

from sdlib.provenance import provenance, write_json


def test_provenance_names_commit_versions_and_hardware():
    rec = provenance(extra_key=3)
    assert rec["extra_key"] == 3
    assert rec["hardware"]["cpu_count"] >= 1 and rec["hardware"]["device"] == "cpu"
    assert rec["torch"].count(".") >= 1 and rec["sdlib"]
    assert rec["commit"] is None or len(rec["commit"]) == 40
    json.dumps(rec)  # JSON-ready


def test_provenance_reports_the_checkout_the_run_started_from(monkeypatch):
    from sdlib import provenance as prov

    now = prov._checkout()
    assert "checkout_at_end" not in provenance() or prov._AT_IMPORT != now
    started = {"commit": "0" * 40, "dirty": False}  # as if HEAD had moved since the import
    monkeypatch.setattr(prov, "_AT_IMPORT", started)
    rec = provenance()
    assert {k: rec[k] for k in started} == started
    assert rec["checkout_at_end"] == now
    monkeypatch.setattr(prov, "_AT_IMPORT", now)
    assert "checkout_at_end" not in provenance()


def test_write_json_round_trip_and_refuses_nan(tmp_path):
    p = write_json(tmp_path / "sub" / "summary.json", {"t": [0.0, 1.5], "L": [1.0, 2.0], "n": 4})
    assert json.loads(p.read_text()) == {"t": [0.0, 1.5], "L": [1.0, 2.0], "n": 4}
    with pytest.raises(ValueError, match=r"L\[1\]"):
        write_json(p, {"L": [1.0, math.nan]})
    assert json.loads(p.read_text())["n"] == 4  # the old file is untouched
    assert [f.name for f in p.parent.iterdir()] == ["summary.json"]  # no temporary left behind
