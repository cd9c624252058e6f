"""Chapter 01 runs under papermill with non-default parameters and records the right numbers."""
import json
import os
from pathlib import Path

import papermill as pm
import pytest

from sdlib.electrons import ordered

ROOT = Path(__file__).resolve().parents[1]


def run(tmp_path, **params):
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env_path]))
    try:
        pm.execute_notebook(str(ROOT / "book" / "01_model.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters=params, kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    finally:
        os.environ["PYTHONPATH"] = env_path
    return json.loads((tmp_path / "results.json").read_text())


def test_chapter01_with_other_parameters(tmp_path):
    res = run(tmp_path, L=6, J_square=4.0, filling_tri=0.3, size=24, n_J=4, n_mu=8)
    assert res["J_square"] == 4.0 and res["L"] == 6
    expected = ordered.compare("square", 4.0, filling=0.485, size=24)
    for name, value in expected.items():
        assert res[f"E_square_J4.0_f0.485_{name}"] == pytest.approx(value, abs=1e-12)
    assert res["winner_triangular_J2.0_f0.3"] == ordered.ground_state("triangular", 2.0, filling=0.3, size=24)
    assert max(res["torque_FM"], res["torque_Neel"], res["torque_tetrahedral"]) < 1e-10


def test_chapter01_rejects_bad_parameters(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="filling_square must be in"):
        run(tmp_path, filling_square=1.5, size=24)
