"""sdlib.results reads the committed results as they are stored (the intro's table relies on it)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sdlib import results
from sdlib.analysis import growth_exponent

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "book" / "runs"


def read(path):
    return json.loads(Path(path).read_text())


@pytest.mark.parametrize("name", ["square-double-exchange", "triangular-tetrahedral"])
def test_model_card_is_the_provenance(name):
    cfg = read(ROOT / "sdlib" / "data" / f"{name}.json")
    card = results.model_card(name)
    held_out = cfg["provenance"]["errors"]["held_out_quenches"]
    assert card["torque_error"] == held_out["torque_rel"] and 0 < card["torque_error"] < 1
    assert card["held_out_frames"] == held_out["n_frames"]
    assert card["cutoff"] == cfg["descriptor"]["cutoff"] and card["lattice"] == cfg["physics"]["lattice"]
    assert card["weights_sha256"] == cfg["weights_sha256"]


@pytest.mark.parametrize("name", ["square-double-exchange", "triangular-tetrahedral"])
def test_locality_has_the_model_cutoff(name):
    loc, card = results.locality(name), results.model_card(name)
    assert any(math.isclose(r, card["cutoff"]) for r in loc["radii"])
    assert all(len(v) == len(loc["radii"]) for v in loc["sensitivity"].values())


@pytest.mark.parametrize("name", [p.parent.name for p in sorted(RUNS.glob("04-triangular-coarsening*/summary.json"))])
def test_coarsening_run_is_the_summary(name):
    s = read(RUNS / name / "summary.json")
    v = read(RUNS / name / "validation.json")
    run = results.coarsening_run(run=name)
    assert run["model_path"] == (s["params"].get("model_path") or None) and run["dt"] == s["params"]["dt"]
    assert run["n_L"] == tuple(s["growth_exponent"]) and run["n_wall"] == tuple(s["growth_exponent_wall"])
    assert run["L_big"] == s["params"]["L_big"] and run["t_end"] == s["t"][-1]
    assert run["ref_L"] ** 2 == v["n_sites"] and run["ref_max_dE"] > 0
    (lo, mid), n_early, _ = run["halves"][0]
    (mid2, hi), n_late, _ = run["halves"][1]
    assert lo == s["params"]["t_fit"] and mid == mid2 and hi == s["t"][-1]
    assert math.isclose(mid, math.sqrt(lo * hi))
    assert n_early == growth_exponent(s["t"], s["L"], lo, mid)
    whole = growth_exponent(s["t"], s["L"], lo)
    assert math.isclose(whole[0], run["n_L"][0], rel_tol=1e-9)  # the run's fit is reproduced
    assert run["t"].tolist() == s["t"] and run["L"].tolist() == s["L"] and run["L_err"].tolist() == s["L_err"]
    assert [None if math.isnan(w) else w for w in run["l_wall"].tolist()] == s["l_wall"]


def test_coarsening_sweeps_read_every_finished_run():
    J = results.coarsening_sweep("sweep_J")
    kT = results.coarsening_sweep("sweep_kT")
    assert {q["J"] for q in J} >= {2.0, 3.0, 4.0}
    assert len(kT) >= 2 and all(q["kT"] is not None for q in kT)
    assert all(len(q["n_L"]) == 2 and q["L_big"] > 0 for q in J + kT)


def test_phase_separation_run_is_the_summary():
    s = read(RUNS / "05-square-phase-separation" / "summary.json")
    run = results.phase_separation_run()
    assert run["n_early"] == tuple(s["exponents"]["early"]) and run["n_late"] == tuple(s["exponents"]["late"])
    assert run["L"] == s["params"]["L"] and run["ref_quenches"] >= 1
    assert 0 < run["ref_max_dcorr"] < 1 and run["ref_max_dE"] > 0
    c = run["clusters"]  # the production run prints its cluster census at its last time
    assert c is not None and c["t"] == s["t"][-1] and c["per_quench"] >= 1 and 0 < c["percent_sites"] < 100
    for w in ("early", "late"):  # the spread of the quenches' own exponents, where the run has two or more
        ns = [n for n in s.get("exponents_per_quench", {}).get(w, []) if n is not None]
        got = run[f"n_{w}_quenches"]
        assert (got is None) == (len(ns) < 2)
        if got is not None:
            assert got[0] == pytest.approx(np.mean(ns)) and got[1] == pytest.approx(np.std(ns, ddof=1) / np.sqrt(len(ns)))


def test_phase_separation_run_spread_over_quenches(tmp_path):
    """A run with per-quench exponents gives their mean and standard error; None below two quenches."""
    run = tmp_path / "book" / "runs" / "05-square-phase-separation"
    run.mkdir(parents=True)
    for name in ("summary.json", "validation.json", "05_square_phase_separation.ipynb"):
        (run / name).write_bytes((RUNS / "05-square-phase-separation" / name).read_bytes())
    s = read(run / "summary.json")
    s["exponents_per_quench"] = {"early": [0.1, 0.3, None], "late": [0.05]}
    (run / "summary.json").write_text(json.dumps(s))
    v = read(run / "validation.json")
    v["exact_30x30"] = [{"seed": 3, "t": [0.0, 0.5, 1.0], "corr_exact": [0.0, -0.1, -0.2], "corr_ml": [0.0, -0.12, -0.2]},
                        {"seed": 5, "t": [0.0, 0.5], "corr_exact": [0.0, -0.1], "corr_ml": [0.0, -0.09]}]
    (run / "validation.json").write_text(json.dumps(v))
    out = results.phase_separation_run(root=tmp_path)
    assert out["n_early_quenches"] == pytest.approx((0.2, 0.1)) and out["n_late_quenches"] is None
    # the replay over the times both seeds share (t <= 0.5): |-0.02| and |+0.01|, seed mean |-0.005|
    assert out["exact30"]["seeds"] == [3, 5] and out["exact30"]["t_end"] == 0.5
    assert out["exact30"]["max_dcorr"] == pytest.approx(0.02) and out["exact30"]["mean_dcorr"] == pytest.approx(0.005)
    v["exact_30x30"] = []
    (run / "validation.json").write_text(json.dumps(v))
    assert results.phase_separation_run(root=tmp_path)["exact30"] is None


def test_printed_clusters_reads_outputs_not_source(tmp_path):
    run = tmp_path / "book" / "runs" / "09-test"
    run.mkdir(parents=True)
    line = "at t = {}: {} clusters per quench, {} % of the sites in clusters\n"
    cell = {"cell_type": "code", "source": [line.format(1.0, 9.0, 50.0)],
            "outputs": [{"output_type": "stream", "name": "stdout",
                         "text": [line.format(2.0, 7.0, 12.5), line.format(4.0, 5.0, 10.5)]}]}
    (run / "run.ipynb").write_text(json.dumps({"cells": [cell]}))
    assert results.printed_clusters("09-test", root=tmp_path) == {"t": 4.0, "per_quench": 5.0, "percent_sites": 10.5}
    cell["outputs"] = []
    (run / "run.ipynb").write_text(json.dumps({"cells": [cell]}))
    assert results.printed_clusters("09-test", root=tmp_path) is None


def test_ml_benchmark_is_the_summary():
    b = read(ROOT / "benchmarks" / "results_ml.json")["summary"]["cpu"]
    out = results.ml_benchmark()
    assert out["exponent_f64"] == b["exponents"]["ml64_eval"]
    assert all(s64 > 1 and s32 > 1 for s64, s32 in out["speedup_ed"].values())


def test_missing_results_say_where_they_are_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkout"):
        results.coarsening_run(root=tmp_path)


def test_run_figure_is_the_cell_output(tmp_path):
    import base64

    png = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
    run = tmp_path / "book" / "runs" / "09-test"
    run.mkdir(parents=True)
    cells = [{"cell_type": "code", "source": ["x = 1\n"], "outputs": []},
             {"cell_type": "code", "source": ["plot_snapshots(lat)\n"],
              "outputs": [{"output_type": "stream", "text": "hello"},
                          {"output_type": "display_data", "data": {"image/png": base64.b64encode(png).decode()}}]}]
    (run / "09.ipynb").write_text(json.dumps({"cells": cells}))
    assert results.run_figure("09-test", "plot_snapshots", root=tmp_path) == png
    with pytest.raises(ValueError, match="no PNG"):
        results.run_figure("09-test", "x = 1", root=tmp_path)
    with pytest.raises(ValueError, match="marker"):
        results.run_figure("09-test", "not there", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="10-missing not found"):
        results.run_figure("10-missing", "x", root=tmp_path)
    (tmp_path / "book" / "runs" / "11-empty").mkdir()
    with pytest.raises(FileNotFoundError, match="one executed notebook"):
        results.run_figure("11-empty", "x", root=tmp_path)


@pytest.mark.parametrize("run, marker", [("04-triangular-coarsening", "plot_triangle_field(lat_big"),
                                         ("05-square-phase-separation", "analysis.bond_field(spins_t[k, 0]")])
def test_production_snapshots_are_there(run, marker):
    assert results.run_figure(run, marker).startswith(b"\x89PNG")


def test_final_spins_are_the_stored_ones_normalised(tmp_path):
    import torch
    from safetensors.torch import save_file

    raw = torch.randn(2, 16, 3, dtype=torch.float32)
    raw = raw / raw.norm(dim=-1, keepdim=True) * (1 + 1e-5 * torch.rand(2, 16, 1))  # unit to float32 rounding
    run = tmp_path / "book" / "runs" / "r"
    run.mkdir(parents=True)
    save_file({"spins": raw}, str(run / "final_spins.safetensors"))
    s = results.final_spins("r", root=tmp_path)
    assert s.dtype == torch.float64 and s.shape == (2, 16, 3)
    assert torch.allclose(s.norm(dim=-1), torch.ones(2, 16, dtype=torch.float64), rtol=0, atol=1e-15)
    assert torch.allclose(s, raw.double(), atol=2e-5)  # only the length changed
    (run / "final_spins.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="final configurations"):
        results.final_spins("r", root=tmp_path)
    committed = results.final_spins()  # chapter 05's production run
    assert committed.shape[-1] == 3 and torch.allclose(committed.norm(dim=-1), torch.ones_like(committed[..., 0]))
