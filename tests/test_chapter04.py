"""Chapter 04 under papermill: bad parameters are refused; a tiny run writes consistent results."""
import json
from pathlib import Path

import numpy as np
import papermill as pm
import pytest
import torch

from sdlib import ExactSolver, SDModel, analysis, lattice, random_spins, results
from sdlib.datagen.reference import read_reference, reference_paths
from sdlib.electrons import ordered

from tests.chapters import run_chapter

TINY = dict(L_ref=8, n_ref=2, t_ref=3.0, L_big=8, n_big=2, t_big=4.0, t_fit=1.0, n_frames=10, production="",
            t_exact=0.0)


def run(tmp_path, **params):
    return run_chapter("04_triangular_coarsening.ipynb", tmp_path, **params)


@pytest.mark.parametrize("bad, message", [
    (dict(L_big=31), "L_big must be an even integer"),
    (dict(t_fit=100.0), "t_fit must be a number in"),
    (dict(kT=-0.1), "kT must be a number in"),
    (dict(ml_dtype="float16"), "ml_dtype must be 'float64' or 'float32'"),
])
def test_chapter04_rejects_bad_parameters(tmp_path, bad, message):
    with pytest.raises(pm.PapermillExecutionError, match=message):
        run(tmp_path, **(TINY | bad))


def test_chapter04_tiny_run_writes_consistent_results(tmp_path):
    out = tmp_path / "prod"
    res = run(tmp_path, **(TINY | dict(t_exact=5.0)), out_dir=str(out))
    summary = json.loads((out / "summary.json").read_text())
    validation = json.loads((out / "validation.json").read_text())
    # the replay against the committed exact 36 x 36 quenches (every one that has reached t = 10)
    refs = [read_reference(p) for p in reference_paths(results.run_dir("04-exact-36x36"))]
    refs = {r["params"]["seed"]: r for r in refs if r["t_reached"] >= 10}
    rows = validation["exact_36x36"]
    assert res["exact36_seeds"] == len(rows) == len(refs) >= 1
    lat36 = lattice.triangular(36)
    for row in rows:
        ref = refs[row["seed"]]
        n = len(row["t"])
        assert row["t"][-1] == pytest.approx(5.0) and row["t"] == ref["spins_t"][:n].tolist()
        L_ref = analysis.correlation_length(analysis.chirality(ref["spins"][:n], lat36), lat36)
        assert row["L_exact"] == pytest.approx(L_ref.tolist(), rel=1e-12)
        assert row["L_ml"][0] == row["L_exact"][0]  # the same initial spins
    assert {"t", "L", "n_sites", "n_seeds", "params"} <= set(summary)
    assert {"t", "L_ml", "L_reference"} <= set(validation)
    assert summary["n_sites"] == 64 and summary["n_seeds"] == 2 and summary["params"]["L_big"] == 8
    assert len(summary["t"]) == len(summary["L"]) and summary["t"][-1] == pytest.approx(TINY["t_big"])
    assert len(validation["t"]) == len(validation["L_ml"]) == len(validation["L_reference"])
    # the same initial spins for the network and the reference: identical at t = 0, different later
    assert validation["L_ml"][0] == validation["L_reference"][0]
    # the reference is ED of the model's physics: its first energy is that of the initial spins
    s0 = random_spins(64, 2, seed=1000)  # the chapter's validation spins: seed + 1000
    p = summary["params"]
    ed = ExactSolver(SDModel(lattice.triangular(8), J=p["J"], filling=p["filling"]))
    assert validation["E_reference"][0] == pytest.approx((ed(s0).energy / 64).mean().item(), abs=1e-12)
    # the recorded exponent is the fit of the written curve
    n, err = analysis.growth_exponent(summary["t"], summary["L"], t_min=TINY["t_fit"])
    assert res["growth_exponent"] == pytest.approx(n, rel=1e-12) and res["growth_exponent_err"] == pytest.approx(err)
    assert not (out / "big_quench.ckpt").exists(), "a finished run removes its checkpoint"
    # every domain length is positive and finite, and no larger than the lattice
    assert np.all(np.isfinite(summary["L"])) and 0 < min(summary["L"]) and max(summary["L"]) < 8
    assert ordered.ground_state("triangular", summary["params"]["J"], filling=summary["params"]["filling"]) == \
        "tetrahedral"


def test_chapter04_runs_a_model_given_by_path(tmp_path):
    """``model_path``: the chapter drives its quenches with that model and takes J, the ED reference
    and the recorded weights hash from it (here the shipped weights relabelled as J = 2.5)."""
    from sdlib import MLForceField

    ff = MLForceField.pretrained("triangular-tetrahedral", lattice=lattice.triangular(8))
    ff.physics = ff.physics | {"J": 2.5}
    ff.save(tmp_path / "other")
    out = tmp_path / "prod"
    res = run(tmp_path, **TINY, out_dir=str(out), model_path=str(tmp_path / "other"), ml_dtype="float32")
    summary = json.loads((out / "summary.json").read_text())
    validation = json.loads((out / "validation.json").read_text())
    p = summary["params"]
    assert p["J"] == 2.5 and p["model_path"] == str(tmp_path / "other") and res["J"] == 2.5
    assert p["model_sha256"] == ff.weights_sha256 and p["ml_dtype"] == "float32"
    s0 = random_spins(64, 2, seed=1000)  # the chapter's validation spins: seed + 1000
    # the network ran in float32 (ml_dtype), within 1e-5 of its float64 energy
    f32 = MLForceField.load(tmp_path / "other", lattice=lattice.triangular(8), dtype=torch.float32)
    assert validation["E_ml"][0] == pytest.approx((f32(s0).energy / 64).mean().item(), rel=1e-12)
    assert validation["E_ml"][0] == pytest.approx((ff(s0).energy / 64).mean().item(), rel=1e-5)
    ed = ExactSolver(SDModel(lattice.triangular(8), J=2.5, filling=p["filling"]))
    assert validation["E_reference"][0] == pytest.approx((ed(s0).energy / 64).mean().item(), abs=1e-12)


def test_chapter04_takes_the_ensemble_of_a_grand_canonical_model(tmp_path):
    """A network of the study's physics is grand canonical (μ, T_e; no filling): the chapter's ED
    reference is then grand canonical at its μ and T_e, and the ordered states are compared at f = 1/4."""
    from sdlib import MLForceField

    ff = MLForceField.pretrained("triangular-tetrahedral", lattice=lattice.triangular(8))
    ff.physics = {k: v for k, v in ff.physics.items() if k != "filling"} | {"mu": -2.4194, "kT": 0.1}
    ff.save(tmp_path / "grand")
    out = tmp_path / "prod"
    run(tmp_path, **TINY, out_dir=str(out), model_path=str(tmp_path / "grand"))
    validation = json.loads((out / "validation.json").read_text())
    s0 = random_spins(64, 2, seed=1000)
    grand = ExactSolver(SDModel(lattice.triangular(8), J=ff.physics["J"], mu=-2.4194, kT=0.1))
    assert validation["E_reference"][0] == pytest.approx((grand(s0).energy / 64).mean().item(), abs=1e-12)
    canonical = ExactSolver(SDModel(lattice.triangular(8), J=ff.physics["J"], filling=0.25, kT=0.1))
    assert abs(validation["E_reference"][0] - (canonical(s0).energy / 64).mean().item()) > 0.1  # Ω, not F
    assert json.loads((out / "summary.json").read_text())["params"]["filling"] == 0.25


def test_chapter04_finds_a_committed_model_relative_to_the_repository(tmp_path):
    """The J sweep's networks are committed beside it; ``model_path`` relative to the repository
    finds them from any working directory, and the run takes J from the model."""
    from sdlib import MLForceField

    rel = "book/runs/04-triangular-coarsening/sweep_J/J3/model/triangular-tetrahedral"
    ff = MLForceField.load(Path(__file__).resolve().parents[1] / rel)
    out = tmp_path / "prod"
    res = run(tmp_path, **TINY, out_dir=str(out), model_path=rel)
    p = json.loads((out / "summary.json").read_text())["params"]
    assert p["J"] == ff.physics["J"] == 3.0 and res["J"] == 3.0
    assert p["model_sha256"] == ff.weights_sha256
