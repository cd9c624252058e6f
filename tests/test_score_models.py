"""scripts/score_models.py: a fixed-filling network's row against exact reference quenches, checked
on a 6 x 6 lattice against a direct evaluation (exact canonical fields by ExactSolver, the network's
own fixed-filling fields, the replay)."""

import pytest
import torch

from sdlib import ExactSolver, MLForceField, lattice, random_spins
from sdlib.datagen import SQUARE
from sdlib.datagen.reference import read_reference, reference_paths, replay, run_reference

from tests.scripts import load_script, torque_rel

SMALL = SQUARE.replace(L=6, cutoff=2.0, phase_cutoff=None)


def test_row_matches_a_direct_evaluation(tmp_path):
    sm = load_script("score_models")
    run_reference(SMALL, tmp_path, (0, 1), 1.0, bath_kT=0.0, corr_every=2, spins_every=5, checkpoint_every=10,
                  log=lambda *_: None)
    refs = {int(p.stem[4:]): read_reference(p) | {"path": p} for p in reference_paths(tmp_path)}
    exact_solver = ExactSolver(SMALL.dynamics_model())  # canonical at f = 0.485, T_e = 0.05
    exact = {s: exact_solver(r["spins"]).fields for s, r in refs.items()}
    late = random_spins(64, 2, seed=5, dtype=torch.float64)  # an 8 x 8 "late texture"
    row = sm.score("square-double-exchange", refs, exact, 1.0, late, log=lambda *_: None)

    lat = lattice.square(6)
    ff = MLForceField.pretrained("square-double-exchange", lattice=lat)
    spins = torch.cat([refs[s]["spins"] for s in refs])
    net = torch.stack([ff(x).fields for x in spins])  # fixed filling: the network's own μ* per frame
    ref_fields = torch.cat([exact[s] for s in refs])
    n0 = len(refs[0]["spins"])  # frames of seed 0 (t = 0, 0.25, ..., 1)
    assert row["frames"] == len(spins) == 2 * n0 == 10 and row["search_failed"] == 0
    assert row["torque_rel"] == pytest.approx(torque_rel(spins, net, ref_fields), rel=1e-8)
    assert row["by_window"]["early"]["frames"] == 10 and row["by_window"]["late"]["frames"] == 0
    assert row["by_seed"]["1"] == pytest.approx(torque_rel(spins[n0:], net[n0:], ref_fields[n0:]), rel=1e-8)
    assert row["monotonicity_late_128"]["frames"] == 2
    for s in refs:  # the replay row is the network's trajectory against the stored one
        r = replay(ff, refs[s]["path"], lat, t_end=1.0)
        d = (r["corr"] - refs[s]["corr"][:len(r["corr"])]).abs()
        assert row["replay"][str(s)]["max_dcorr"] == pytest.approx(d.max().item(), rel=1e-10)
        assert d[0] == 0 and d.max() > 0  # the same start; different fields
    assert row["replay_max_dcorr"] == max(v["max_dcorr"] for v in row["replay"].values())
