"""Chapter 01 runs under papermill with non-default parameters and records the right numbers."""

import papermill as pm
import pytest

from sdlib.electrons import ordered

from tests.chapters import run_chapter



def run(tmp_path, **params):
    return run_chapter("01_model.ipynb", tmp_path, **params)


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
