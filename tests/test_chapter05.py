"""Chapter 05 under papermill: tiny parameters, the files of a production run, the recorded energies."""
import json

import numpy as np
import papermill as pm
import pytest
import torch

from sdlib import ExactSolver, MLForceField, SDModel, analysis, lattice
from sdlib.datagen.reference import read_reference, reference_paths
from sdlib.results import run_dir
from sdlib.electrons import ordered

from tests.chapters import run_chapter

TINY = dict(L_ref=6, n_seeds_ref=2, n_steps_ref=10, L=8, n_seeds=2, n_steps=20, n_snapshots=8, t_exact=0.5)


def run(tmp_path, **params):
    return run_chapter("05_square_phase_separation.ipynb", tmp_path, **params)


@pytest.mark.parametrize("bad, message", [
    ({"L_ref": 7}, "L_ref must be an even integer in"),
    ({"threshold": 1.0}, "threshold must be a number in"),
    ({"precision": "float16"}, "precision must be 'float64' or 'float32'"),
    ({"n_steps": 5}, "n_steps must be an integer in"),
    ({"t_exact": -1.0}, "t_exact must be a number in"),
    ({"use_committee": 1}, "use_committee must be True or False"),
])
def test_chapter05_rejects_bad_parameters(tmp_path, bad, message):
    with pytest.raises(pm.PapermillExecutionError, match=message):
        run(tmp_path, **(TINY | bad))


def test_chapter05_tiny_production_run(tmp_path):
    out = tmp_path / "run"
    res = run(tmp_path, **TINY, out_dir=str(out))
    # energies: recomputed here by ED on the same lattice, independently of the notebook
    lat = lattice.square(TINY["L_ref"])
    phys = MLForceField.pretrained("square-double-exchange").physics
    ed = ExactSolver(SDModel(lat, t=phys["t"], J=phys["J"], filling=phys["filling"], kT=phys["kT"]))
    for name, key in (("Neel", "e_neel"), ("FM", "e_fm")):
        assert res[key] == pytest.approx(float(ed(ordered.spins(name, lat)).energy) / lat.n_sites, abs=1e-10)
    assert res["e_phase_separated"] < res["e_neel"] < res["e_fm"]
    summary = json.loads((out / "summary.json").read_text())
    assert {"t", "L", "n_sites", "n_seeds", "params"} <= set(summary)
    assert summary["n_sites"] == TINY["L"] ** 2 and summary["params"]["L"] == TINY["L"]
    assert len(summary["t"]) == len(summary["L"]) and summary["t"][-1] == pytest.approx(TINY["n_steps"] * 0.05)
    assert summary["L"][-1] == pytest.approx(res["L_final"])
    # cluster statistics: an integer count per quench, and every cluster has at least two sites
    n_clusters = np.array(summary["clusters_per_site"]) * summary["n_sites"] * summary["n_seeds"]
    fraction = np.array(summary["fraction_in_clusters"])
    assert len(n_clusters) == len(fraction) == len(summary["t"])
    assert np.allclose(n_clusters, np.round(n_clusters), atol=1e-9) and np.all((0 <= fraction) & (fraction <= 1))
    assert np.all(fraction * summary["n_sites"] >= 2 * n_clusters / summary["n_seeds"] - 1e-9)
    # each quench's own L_A: their mean is the curve, their exponents are fits in the mean curve's windows
    # (this short run has none to fit; analysis.sample_exponents is tested on power laws)
    per_quench = np.array(summary["L_per_quench"])
    assert per_quench.shape == (TINY["n_seeds"], len(summary["t"]))
    assert np.allclose(per_quench.mean(0), summary["L"], rtol=1e-12, atol=0)
    ex = summary["exponents"]
    for window, (lo, hi) in (("early", (ex["t_start"], ex["t_split"])), ("late", (ex["t_split"], None))):
        got = summary["exponents_per_quench"][window]
        assert len(got) == TINY["n_seeds"]
        for n, L_q in zip(got, per_quench):
            try:
                expected = analysis.growth_exponent(summary["t"], L_q, t_min=lo, t_max=hi)[0]
            except ValueError:
                expected = None
            assert (n is None) == (expected is None or not np.isfinite(expected))
            if n is not None:
                assert n == pytest.approx(expected, rel=1e-12)
    val = json.loads((out / "validation.json").read_text())
    corr_ml, corr_ref = torch.tensor(val["corr_ml"]), torch.tensor(val["corr_reference"])
    assert corr_ml.shape == corr_ref.shape == (TINY["n_seeds_ref"], len(val["t"]))
    assert torch.allclose(corr_ml[:, 0], corr_ref[:, 0]), "both quenches start from the same random states"
    assert (corr_ml - corr_ref).abs().max().item() == pytest.approx(res["corr_max_diff"])
    # the replay against the committed exact 30 x 30 quenches: the exact side is the files' own record
    exact = {int(p.stem[4:]): read_reference(p) for p in reference_paths(run_dir("05-exact-30x30"))}
    exact = {s: r for s, r in exact.items() if r["t_reached"] >= TINY["t_exact"]}  # seeds still short are left out
    assert exact and sorted(r["seed"] for r in val["exact_30x30"]) == sorted(exact)
    for r in val["exact_30x30"]:
        ref = exact[r["seed"]]
        assert r["t"][-1] == pytest.approx(TINY["t_exact"]) and len(r["corr_ml"]) == len(r["corr_exact"])
        assert torch.equal(torch.tensor(r["corr_exact"], dtype=torch.float64), ref["corr"][:len(r["t"])])
        assert r["corr_ml"][0] == pytest.approx(r["corr_exact"][0], abs=1e-12), "same initial state"
    # the committee: no exact frame at 0 < t <= t_exact = 0.5 (the files keep one every 2.5), so no
    # calibration; along the quench the members disagree a little, never by the torque itself
    com = val["committee"]
    assert "ratio" not in com and len(com["along_quench"]) >= 1
    assert all(0 < r["rel_spread"] < 1 and r["fm_sites"] >= 0 for r in com["along_quench"])
    assert res["corr30_max_diff"] == pytest.approx(max(np.abs(np.subtract(r["corr_ml"], r["corr_exact"])).max()
                                                       for r in val["exact_30x30"]))
    # a second run resumes every quench from its checkpoint and reproduces the results exactly
    again = run(tmp_path, **TINY, out_dir=str(out))
    assert again == res
