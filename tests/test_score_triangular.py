"""scripts/score_triangular.py: a triangular network's row (held-out torque error, torque error on the
stored frames of exact quenches, the replay's chirality correlation length) against a direct
evaluation, on a 12 x 12 exact quench of the study's physics."""

import json

import numpy as np
import pytest
import torch

from sdlib import ExactSolver, MLForceField, SDModel, analysis, lattice, random_spins
from sdlib.datagen import TRIANGULAR
from sdlib.datagen.label import label_fixed
from sdlib.datagen.reference import read_reference, reference_paths, run_reference
from sdlib.training import FieldDataset

from tests.scripts import load_script, torque_rel

SMALL = TRIANGULAR.replace(L=12, cutoff=2.0, phase_cutoff=None, dt=0.25, frame_times=(2.0, 5.0))


def test_row_matches_a_direct_evaluation(tmp_path, monkeypatch):
    sm = load_script("score_triangular")
    run_reference(SMALL, tmp_path / "ref", (2,), 12.5, bath_kT=0.0, corr_every=2, spins_every=10,
                  checkpoint_every=25, log=lambda *_: None)
    held_spins = random_spins(144, 4, seed=9)  # two "quenches" of the two frame times
    held = FieldDataset(label_fixed(held_spins, tmp_path / "held.h5", SMALL))
    held_times = torch.tensor([2.0, 5.0, 2.0, 5.0], dtype=torch.float64)
    refs = [read_reference(p) | {"path": p} for p in reference_paths(tmp_path / "ref")]
    model = SDModel(lattice.triangular(12), J=2.0, mu=SMALL.mu, kT=SMALL.kT)
    k = torch.arange(0, len(refs[0]["spins"]), 2)
    spins = refs[0]["spins"][k]
    exact = sm.exact_fields(spins, tmp_path / "cache.pt", model)
    assert torch.equal(sm.exact_fields(spins, tmp_path / "cache.pt", model), exact)  # cached
    more = refs[0]["spins"][:3]  # frames 0 and 2 are cached, 1 is new
    assert torch.allclose(sm.exact_fields(more, tmp_path / "cache.pt", model),
                          torch.stack([ExactSolver(model)(x).fields for x in more]), rtol=0, atol=1e-12)
    assert len(torch.load(tmp_path / "cache.pt", weights_only=True)["spins"]) == len(k) + 1
    frames = {2: (refs[0]["spins_t"][k], spins, exact)}
    monkeypatch.setattr(sm, "LATE", 5.0)  # the late window of this short quench: its frames at t = 5 and 10
    row = sm.score("triangular-tetrahedral", held, held_times, SMALL.frame_times, refs, frames, log=lambda *_: None)

    ff = MLForceField.pretrained("triangular-tetrahedral", lattice=lattice.triangular(12))
    solver = ExactSolver(model)
    direct = torch.stack([solver(x).fields for x in spins])
    assert torch.allclose(exact, direct, rtol=0, atol=1e-12)
    assert torch.allclose(held.fields, torch.stack([solver(x).fields for x in held_spins]), rtol=0, atol=1e-10)
    net_held = torch.stack([ff(x).fields for x in held_spins])
    assert row["heldout"]["torque_rel"] == pytest.approx(torque_rel(held_spins, net_held, held.fields), rel=1e-8)
    assert row["heldout"]["by_time"]["5"] == pytest.approx(
        torque_rel(held_spins[1::2], net_held[1::2], held.fields[1::2]), rel=1e-8)
    r = row["exact"]["2"]
    net = torch.stack([ff(x).fields for x in spins])
    assert r["torque_rel"] == pytest.approx(torque_rel(spins, net, direct), rel=1e-8)
    assert r["frame_t"] == [0.0, 5.0, 10.0]
    assert r["torque_rel_late"] == pytest.approx(torque_rel(spins[1:], net[1:], direct[1:]), rel=1e-8)
    L_ref = analysis.correlation_length(analysis.chirality(refs[0]["spins"], lattice.triangular(12)),
                                        lattice.triangular(12)).numpy()
    assert np.allclose(r["L_exact"], L_ref[:len(r["L_exact"])]) and r["t"][-1] == pytest.approx(12.5)
    assert r["L_ml"][0] == r["L_exact"][0]  # the same initial spins
    # no domains by t = 12.5 (L < 1): no onset, and no late window to compare
    assert max(r["L_exact"]) < 1 and np.isnan(r["onset_exact"]) and r["late_dev"] is None


def test_replayed_to_is_the_last_stored_frame_the_quench_has_reached():
    sm = load_script("score_triangular")
    refs = [{"params": {"seed": 0}, "t_reached": 180.0, "spins_t": torch.arange(0, 186, 2.5, dtype=torch.float64)},
            {"params": {"seed": 3}, "t_reached": 12.0, "spins_t": torch.arange(0, 15, 2.5, dtype=torch.float64)}]
    assert sm.replayed_to(refs) == {"0": 180.0, "3": 10.0}


def test_t_end_scores_the_quench_as_it_stood_and_a_late_heldout_set_is_scored_apart(tmp_path, capsys):
    """``--t-end``: the rows of the exact quench cut at t_end are the first part of the complete rows (the
    stored frames, the exact L(t) and the network's replay); ``--heldout-late``: a second held-out set
    with its own frame times (read from the file), scored like the first; a file scored to another time
    refuses ``--update``."""
    sm = load_script("score_triangular")
    run_reference(SMALL, tmp_path / "ref", (2,), 12.5, bath_kT=0.0, corr_every=2, spins_every=10,
                  checkpoint_every=25, log=lambda *_: None)
    early, late = SMALL, SMALL.replace(frame_times=(8.0,))  # five bath temperatures: 10 and 5 frames
    label_fixed(random_spins(144, 10, seed=3), tmp_path / "held.h5", early)
    late_spins = random_spins(144, 5, seed=4)
    label_fixed(late_spins, tmp_path / "late.h5", late)
    args = ["triangular-tetrahedral", "--heldout", str(tmp_path / "held.h5"), "--reference", str(tmp_path / "ref"),
            "--work", str(tmp_path / "work"), "--every", "1"]
    full = sm.main(args + ["--out", str(tmp_path / "full.json")])
    cut = sm.main(args + ["--out", str(tmp_path / "cut.json"), "--t-end", "10", "--heldout-late", str(tmp_path / "late.h5")])
    assert full["replayed_to"] == {"2": 12.5} and cut["replayed_to"] == {"2": 10.0} and cut["t_end"] == 10
    f, c = full["models"][0], cut["models"][0]
    assert c["heldout"] == f["heldout"] and sorted(c["heldout"]["by_time"]) == ["2", "5"] and "heldout_late" not in f
    ef, ec = f["exact"]["2"], c["exact"]["2"]
    assert ef["frame_t"] == [0.0, 2.5, 5.0, 7.5, 10.0, 12.5] and ec["frame_t"] == ef["frame_t"][:5]
    assert ec["torque_rel_per_frame"] == pytest.approx(ef["torque_rel_per_frame"][:5], rel=1e-12)
    assert ef["torque_rel_late"] is None  # no frame at t >= 100 in a quench to 12.5
    n = len(ec["t"])
    assert ec["t"][-1] == pytest.approx(10.0) and ec["t"] == ef["t"][:n] and n < len(ef["t"])
    assert ec["L_exact"] == pytest.approx(ef["L_exact"][:n], rel=1e-12)
    assert ec["L_ml"] == pytest.approx(ef["L_ml"][:n], rel=1e-9)
    hl = c["heldout_late"]
    assert hl["frames"] == 5 and list(hl["by_time"]) == ["8"] and hl["lattice"] == 12
    ff = MLForceField.pretrained("triangular-tetrahedral", lattice=lattice.triangular(12))
    solver = ExactSolver(SDModel(lattice.triangular(12), J=2.0, mu=SMALL.mu, kT=SMALL.kT))
    direct = torch.stack([solver(x).fields for x in late_spins])
    net = torch.stack([ff(x).fields for x in late_spins])
    assert hl["torque_rel"] == pytest.approx(torque_rel(late_spins, net, direct), rel=1e-8)
    with pytest.raises(ValueError, match="replayed_to"):
        sm.main(args + ["--out", str(tmp_path / "cut.json"), "--update", "--heldout-late", str(tmp_path / "late.h5")])
    # the quench scored further without the held-out labels: their rows carried from the earlier file
    plain = ["triangular-tetrahedral", "--reference", str(tmp_path / "ref"), "--work", str(tmp_path / "work"), "--every", "1"]
    (tmp_path / "held.h5").unlink()
    (tmp_path / "late.h5").unlink()
    again = sm.main(plain + ["--heldout-from", str(tmp_path / "cut.json"), "--out", str(tmp_path / "again.json")])
    a = again["models"][0]
    assert a["heldout"] == c["heldout"] and a["heldout_late"] == c["heldout_late"]
    assert again["heldout"] == cut["heldout"] and again["heldout_late"] == cut["heldout_late"]
    assert again["replayed_to"] == {"2": 12.5} and a["exact"]["2"]["torque_rel"] == pytest.approx(ef["torque_rel"], rel=1e-12)
    # other weights under the same name are refused; so are a missing row and a missing choice
    other = json.loads((tmp_path / "cut.json").read_text())
    other["models"][0]["weights_sha256"] = "0" * 64
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="not those its held-out row was scored with"):
        sm.main(plain + ["--heldout-from", str(tmp_path / "other.json"), "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit):
        sm.main(plain + ["--out", str(tmp_path / "x.json")])  # neither --heldout nor --heldout-from
    assert "exactly one of --heldout and --heldout-from" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sm.main(["no-such-model"] + plain[1:] + ["--heldout-from", str(tmp_path / "cut.json"), "--out", str(tmp_path / "x.json")])
    assert "holds no row of no-such-model" in capsys.readouterr().err
