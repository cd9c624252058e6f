"""scripts/measure_locality.py: a small triangular run writes a complete, resumable result file."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

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
    # per frame time: the pooled numbers of its samples (2 quenches x 1 centre each), which add up to the whole
    by_t = s["by_time"]
    assert list(by_t) == ["5", "25", "100"] and all(b["samples"] == 2 for b in by_t.values())
    ch, ref = torch.tensor(s["changes"]), torch.tensor(s["reference"])  # [S, n_R, K], [S, K]
    for k, b in enumerate(by_t.values()):
        sel = [q * 3 + k for q in range(2)]  # samples in order: quench, then frame time
        assert torch.allclose(torch.tensor(b["rms_torque"]), ref[sel].mean(0).sqrt())
        assert torch.allclose(torch.tensor(b["rms_change"]), ch[sel].mean(0).sqrt())
        assert torch.allclose(torch.tensor(b["sensitivity"]), (ch[sel].sum(0) / ref[sel].sum(0)).sqrt())
    total = sum(torch.tensor(b["rms_change"]) ** 2 * b["samples"] for b in by_t.values()) / s["samples"]
    assert torch.allclose(total, ch.mean(0))
    ml.main(args)  # everything is in the progress file: the same numbers again
    assert json.loads(out.read_text())["sizes"]["6"]["sensitivity"] == s["sensitivity"]
    with pytest.raises(SystemExit):
        ml.main(["triangular", "--sizes", "6", "--kTs", "0", "--work", str(tmp_path / "w"), "--json", str(out)])


def test_surrounding_centres_are_fm_and_neel_sites():
    import torch

    from sdlib import lattice
    from sdlib.electrons import ordered
    ml = _script()
    lat = lattice.square(8)
    pick = lambda s: ml.surrounding_centres(s, lat, 100, torch.Generator().manual_seed(0))
    fm = ordered.spins("FM", lat).clone()
    fm[27] = -fm[27]  # one flipped spin in the FM state: its four bonds AFM, its neighbours keep 3 of 4
    f, a = pick(fm)
    assert a == [27] and sorted(f) == [i for i in range(64) if i != 27]
    neel = ordered.spins("Neel", lat).clone()
    neel[27] = -neel[27]  # in the Neel state: its four bonds FM, its neighbours have one FM bond each
    f, a = pick(neel)
    assert f == [27] and sorted(a) == sorted(set(range(64)) - {27} - set(lat.neighbors[27].tolist()))


def test_surroundings_run_reports_both_classes(tmp_path):
    ml = _script()
    out = tmp_path / "sq.json"
    args = ["square", "--surroundings", "--sizes", "8", "--samples", "8:2x2", "--kTs", "0.05", "--times", "2",
            "--work", str(tmp_path / "w"), "--json", str(out)]
    ml.main(args)
    d = json.loads(out.read_text())
    s = d["sizes"]["8"]
    assert d["quench"]["times"] == [2.0] and "surrounding" in d["centres"]
    split = s["by_surroundings"]
    assert sum(c["samples"] for c in split.values()) == s["samples"] and "antiferromagnetic" in split
    for c in split.values():
        assert len(c["sensitivity"]) == len(s["radii"]) and all(0 <= v[0] < 2 for v in c["sensitivity"])
    with pytest.raises(SystemExit):
        ml.main(["triangular", "--surroundings", "--sizes", "6", "--json", str(tmp_path / "t.json")])
