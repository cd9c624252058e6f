"""The data engine (sdlib.datagen): recipes refuse bad values by name; selection takes the frames the
committee disagrees on most; labels equal the solver's; labelling resumes after a kill and its
shards union to the whole pool; the budgeted round runs end to end at a tiny size, and candidate
networks are trained on its labels and compared on its held-out frames."""
import json
import math

import h5py
import pytest
import torch

from sdlib import ExactSolver, lattice, random_spins
from sdlib.datagen import (SQUARE, TRIANGULAR, chunk_files, disagreement, gpu_round, label_pool, labelled_index,
                           ordered_configurations, quench_frames, read_frames, record, select_frames, write_frames)
from sdlib.datagen.candidates import heldout_times, record_candidates, train_candidate
from sdlib.forcefield import ForceFieldOutput
from sdlib.nn import MLForceField

TINY = SQUARE.replace(L=4, cutoff=1.5, phase_cutoff=None, mus=(-4.0, -3.0, -2.0), frame_times=(0.1,), bath_kT=(0.0,))


# ---------------------------------------------------------------- recipes
@pytest.mark.parametrize("change, field", [
    ({"kT": -0.1}, "Recipe.kT"), ({"L": 10}, "Recipe.L = 10 is below 2·cutoff"), ({"mus": ()}, "Recipe.mus"),
    ({"committee": 2}, "Recipe.committee"), ({"uniform_fraction": 1.5}, "Recipe.uniform_fraction"),
    ({"bath_kT": (0.0, -0.01)}, "Recipe.bath_kT"), ({"frame_times": (2.0, 1.0)}, "Recipe.frame_times"),
    ({"filling": 1.2}, "Recipe.filling"), ({"kind": "hexagonal"}, "Recipe.kind"), ({"cutoff": 0.5}, "Recipe.cutoff"),
])
def test_bad_recipe_is_refused_by_name(change, field):
    with pytest.raises(ValueError, match=field.replace("(", r"\(")):
        SQUARE.replace(**change)


def test_recipe_settings_and_ensembles():
    assert SQUARE.n_electrons == 873 and TRIANGULAR.n_electrons is None
    assert TRIANGULAR.mus[0] <= TRIANGULAR.mu <= TRIANGULAR.mus[-1]
    with pytest.raises(ValueError, match="Recipe.mu must lie inside"):
        TRIANGULAR.replace(mu=-1.0)
    with pytest.raises(ValueError, match="Recipe.mu / Recipe.filling"):
        SQUARE.replace(mu=-4.0)
    r = SQUARE.with_settings(["L=12", "cutoff=3.5", "frame_times=0.5,1", "phase_cutoff=none"])
    assert (r.L, r.cutoff, r.frame_times, r.phase_cutoff) == (12, 3.5, (0.5, 1.0), None)
    with pytest.raises(ValueError, match="field=value with a field of Recipe"):
        SQUARE.with_settings(["size=12"])
    assert SQUARE.physics()["mu_range"] == [-6.4, -2.0] and SQUARE.label_model().kT == 0.05


# ---------------------------------------------------------------- selection
class Member:
    """Agrees with the others everywhere except at site 0 when S_0 leans along +x: field m·w ẑ there."""

    def __init__(self, m):
        self.m = m

    def __call__(self, spins):
        fields = spins.clone()
        w = torch.relu(spins[..., 0, 0] - 0.5)
        fields[..., 0, 2] += self.m * w
        return ForceFieldOutput(torch.zeros(spins.shape[:-2]), fields)


def test_selection_returns_the_frames_of_largest_disagreement():
    spins = random_spins(9, (10,), seed=1)
    spins[:, 0] = torch.tensor([-1.0, 0.0, 0.0])  # no disagreement anywhere
    planted = {7: 0.3, 2: 0.6, 5: 1.0}  # frame: angle of S_0 from +x (smaller angle, larger spread)
    for k, theta in planted.items():
        spins[k, 0] = torch.tensor([math.cos(theta), math.sin(theta), 0.0])
    scores = disagreement([Member(m) for m in range(4)], spins)
    assert scores[[0, 1, 3, 4, 6, 8, 9]].abs().max() < 1e-12
    idx, uniform = select_frames(scores, 2, 0.0)
    assert idx.tolist() == [7, 2] and not uniform.any()
    idx, uniform = select_frames(scores, 6, 0.5, seed=3)
    assert idx[:3].tolist() == [7, 2, 5] and uniform.tolist() == [False] * 3 + [True] * 3
    assert len(set(idx.tolist())) == 6


def test_ordered_configurations_are_unit_and_named():
    for recipe, names in ((SQUARE.replace(L=12), {"fm-droplets", "fm-stripe"}),
                          (TRIANGULAR.replace(L=12, cutoff=4.0), {"wall-straight", "wall-curved"})):
        spins, got = ordered_configurations(recipe.lattice(), 4, seed=0)
        assert spins.shape == (4, 144, 3) and set(got) == names
        assert torch.allclose(spins.norm(dim=-1), torch.ones(4, 144, dtype=torch.float64))


# ---------------------------------------------------------------- labels
def pool(tmp_path, n=7):
    spins = random_spins(TINY.n_sites, (n,), seed=2)
    origin = {"round": torch.zeros(n), "time": torch.arange(n).double(), "bath_kT": torch.zeros(n),
              "score": torch.full((n,), float("nan")), "source": ["seed"] * n}
    return write_frames(tmp_path / "frames.h5", spins, origin), spins


def test_labels_equal_the_solver(tmp_path):
    path, spins = pool(tmp_path)
    label_pool(path, tmp_path / "labels", TINY, chunk=3, device="cpu", log=lambda *_: None)
    files = chunk_files(tmp_path / "labels")
    assert [f.name for f in files] == ["c00000.h5", "c00001.h5", "c00002.h5"]
    ref = ExactSolver(TINY.label_model()).grand_labels(spins, TINY.mus, TINY.kT)
    with h5py.File(files[1], "r") as h5:
        assert h5["index"][...].tolist() == [3, 4, 5] and h5["time"][...].tolist() == [3.0, 4.0, 5.0]
        assert torch.equal(torch.from_numpy(h5["spins"][...]), spins[3:6])
        assert torch.allclose(torch.from_numpy(h5["energy"][...]), ref["energy"][3:6], rtol=0, atol=1e-12)
        assert torch.allclose(torch.from_numpy(h5["number"][...]), ref["number"][3:6], rtol=0, atol=1e-12)
        assert torch.allclose(torch.from_numpy(h5["fields"][...]).double(), ref["fields"][3:6], rtol=1e-6, atol=1e-6)
        assert json.loads(h5.attrs["params"])["recipe"]["kT"] == TINY.kT
    assert read_frames(path)["source"] == ["seed"] * 7


def test_killed_labelling_resumes_without_duplicates_or_losses(tmp_path, monkeypatch):
    path, _ = pool(tmp_path)
    calls = {"n": 0}
    real = ExactSolver.grand_labels

    def dies_on_second_chunk(self, spins, mus, kT):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the process is killed while labelling chunk 1
        return real(self, spins, mus, kT)

    monkeypatch.setattr(ExactSolver, "grand_labels", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        label_pool(path, tmp_path / "labels", TINY, chunk=2, device="cpu", log=lambda *_: None)
    assert [f.name for f in chunk_files(tmp_path / "labels")] == ["c00000.h5"]
    assert not [p for p in (tmp_path / "labels").iterdir() if p.name.startswith(".")]  # no partial file
    monkeypatch.setattr(ExactSolver, "grand_labels", real)
    written = label_pool(path, tmp_path / "labels", TINY, chunk=2, device="cpu", max_chunks=1, log=lambda *_: None)
    assert [f.name for f in written] == ["c00001.h5"]  # a budgeted run stops after one chunk
    label_pool(path, tmp_path / "labels", TINY, chunk=2, device="cpu", log=lambda *_: None)
    assert sorted(labelled_index(tmp_path / "labels").tolist()) == list(range(7))
    assert len(labelled_index(tmp_path / "labels")) == 7


def test_shards_union_to_the_whole(tmp_path):
    path, _ = pool(tmp_path, n=8)
    for k in (2, 0, 1):
        label_pool(path, tmp_path / "sharded", TINY, shard=f"{k}/3", chunk=2, device="cpu", log=lambda *_: None)
    label_pool(path, tmp_path / "whole", TINY, chunk=2, device="cpu", log=lambda *_: None)
    assert labelled_index(tmp_path / "sharded").tolist() == list(range(8))
    for a, b in zip(chunk_files(tmp_path / "sharded"), chunk_files(tmp_path / "whole"), strict=True):
        with h5py.File(a, "r") as ha, h5py.File(b, "r") as hb:
            assert all((ha[k][...] == hb[k][...]).all() for k in ("index", "spins", "energy", "fields"))
    with pytest.raises(ValueError, match="shard must be k/n"):
        label_pool(path, tmp_path / "x", TINY, shard="3/3")


# ---------------------------------------------------------------- the budgeted round, tiny
def test_gpu_round_dry_run(tmp_path):
    torch.set_num_threads(1)
    recipe = SQUARE.dry_run().replace(frame_times=(0.2,), bath_kT=(0.0,), ordered=1, select=2, quenches=3)
    report = gpu_round(recipe, tmp_path / "work", tmp_path / "out", minutes=5, device="cpu", chunk=8,
                       seed_quenches=2, epochs=1, frame_norm=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["committee.tar.gz", "log.txt", "report.json"]
    member = MLForceField.load(tmp_path / "work" / "round1" / "committee" / "member0")
    assert member.provenance["training"]["frame_norm"] is True
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    assert report["rounds"][1]["labelled_frames"] == report["rounds"][0]["labelled_frames"] + 3
    frames = read_frames(tmp_path / "work" / "round1" / "frames.h5")
    assert set(frames["source"]) <= {"explore", "uniform", "fm-droplets", "fm-stripe"}
    assert (frames["round"] == 1).all() and torch.isfinite(frames["score"]).all()
    # the committable summary: the saved committees re-evaluated, every labelled frame accounted for
    summary = record(recipe, tmp_path / "work", tmp_path / "record", log=lambda *a: None)
    assert json.loads((tmp_path / "record" / "active.json").read_text()) == json.loads(json.dumps(summary))
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and summary["recipe"]["L"] == recipe.L
    assert sum(rounds[1]["frames_by_origin"].values()) == 3 and "seed" in rounds[0]["frames_by_origin"]
    assert sum(rounds[0]["frames_by_origin"].values()) == rounds[0]["labelled_frames"]
    for r, old in zip(rounds, report["rounds"]):
        assert r["heldout_torque_rel"]["members"] == pytest.approx(old["heldout_torque_rel"]["members"], rel=1e-6)
        cal = r["heldout_torque_rel"]["calibration"]
        assert sum(cal["count"]) == r["heldout_torque_rel"]["n_frames"] * recipe.n_sites
        assert cal["ratio"] is None or cal["ratio"] > 0  # None: members that kept the same warm start agree exactly
    # a candidate network (a larger cutoff, warm-started) trained on every label of the run, compared with the run's own
    cand = train_candidate(recipe.replace(cutoff=3.0, phase_cutoff=2.3), tmp_path / "work", "wide", device="cpu",
                           init_from="pretrained", epochs=1, log=lambda *a: None)
    assert sum(cand.provenance["frames"].values()) == rounds[1]["labelled_frames"]
    few = train_candidate(recipe, tmp_path / "work", "few", device="cpu", frames=4, epochs=1, lr=1e-3, fm_weight=4.0,
                          grad_clip=3.0, log=lambda *a: None)
    assert sum(few.provenance["frames"].values()) == 4 and few.provenance["training"]["lr"] == 1e-3
    assert few.provenance["training"]["fm_weight"] == 4.0 and few.provenance["training"]["grad_clip"] == 3.0
    with pytest.raises(ValueError, match="frames must be an integer in"):
        train_candidate(recipe, tmp_path / "work", "none", frames=2, epochs=1)
    with pytest.raises(ValueError, match=r"fm_weight must be a number in \[1, 1e4\]"):
        train_candidate(recipe, tmp_path / "work", "none", epochs=1, fm_weight=0.5)
    table = record_candidates(tmp_path / "work", tmp_path / "record", log=lambda *a: None, L_cost=10, repeats=1)
    nets = table["networks"]
    assert list(nets) == ["round1 member 0", "few", "wide"] and nets["wide"]["cutoff"] == 3.0
    assert nets["wide"]["n_features"] > nets["round1 member 0"]["n_features"]
    assert nets["round1 member 0"]["heldout_torque_rel"] == pytest.approx(rounds[1]["heldout_torque_rel"]["members"][0],
                                                                          rel=1e-9)
    assert nets["wide"]["windows"]["early"]["torque_rel"] == pytest.approx(nets["wide"]["heldout_torque_rel"])
    assert nets["few"]["heldout_torque_rel"] is None and "cannot be reached" in nets["few"]["failed"]
    assert nets["few"]["init_from"] is None and nets["few"]["lr"][0] == 1e-3 and nets["few"]["fm_weight"] == 4.0
    assert nets["wide"]["fm_weight"] == 1.0
    assert all(v > 0 for name in ("round1 member 0", "wide") for v in nets[name]["us_per_site"].values())
    assert sum(nets["wide"]["by_bond_field"]["count"]) == nets["wide"]["heldout_frames"] * recipe.n_sites
    mono = nets["wide"]["number_monotonicity"]  # the roots of N(μ) = N_e on every held-out frame
    assert mono["frames"] == len(mono["roots_per_frame"]) == nets["wide"]["heldout_frames"]
    assert min(mono["roots_per_frame"]) >= 1 and mono["largest_drop"] >= mono["median_drop"] >= 0
    assert mono["frames_with_several_roots"] == sum(n > 1 for n in mono["roots_per_frame"])
    with pytest.raises(ValueError, match="no label chunks"):
        train_candidate(recipe, tmp_path / "empty", "x")


def test_heldout_times_follow_the_quench_order():
    """make_heldout writes one quench per bath temperature, frames in time order: the times the
    candidates' windows use are those quench_frames reports."""
    recipe = SQUARE.dry_run().replace(frame_times=(0.1, 0.2, 0.3), bath_kT=(0.0, 0.01))
    fr = quench_frames(ExactSolver(recipe.dynamics_model()), recipe, 0, n_quenches=1)
    assert torch.allclose(heldout_times(recipe, len(fr["time"])), fr["time"])
    with pytest.raises(ValueError, match="whole number"):
        heldout_times(recipe, 4)


def test_io_imports_no_dynamics():
    """Quench data are made here, not in sdlib.io: the library's file layer knows no integrator."""
    import subprocess
    import sys

    code = "import sys, sdlib.io; print('sdlib.dynamics' in sys.modules, 'sdlib.datagen' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_error_by_bond_field_locates_a_planted_error():
    """Sites of ferromagnetic surroundings (φ = 1) and of Néel surroundings (φ = -1) fall in the
    outer bins; an error planted on the ferromagnetic half only shows there, and the bins' squared
    errors add up to the total relative error."""
    from sdlib.datagen.candidates import error_by_bond_field
    from sdlib.forcefield import torque

    lat = lattice.square(8)
    x = lat.positions[:, 0].round().long()
    y = lat.positions[:, 1].round().long()
    tilt = torch.tensor([0.3, 0.0, 1.0], dtype=torch.float64)
    fm = torch.nn.functional.normalize(tilt, dim=0).expand(lat.n_sites, 3)
    neel = fm * (1 - 2 * ((x + y) % 2)).double()[:, None]
    spins = torch.stack([fm, neel]).clone()
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(2, lat.n_sites, 3, generator=g, dtype=torch.float64)
    fields = ref.clone()
    fields[0] += 0.1 * torch.randn(lat.n_sites, 3, generator=g, dtype=torch.float64)  # error on the FM frame only
    out = error_by_bond_field(spins, fields, ref, lat)
    assert out["count"][0] == lat.n_sites and out["count"][-1] == lat.n_sites and sum(out["count"]) == 2 * lat.n_sites
    assert out["error_rms"][0] == pytest.approx(0.0, abs=1e-15) and out["error_rms"][-1] > 0.01
    assert out["torque_rel"][1] is None  # empty bin
    t_ref = torque(spins, ref)
    total = ((torque(spins, fields) - t_ref).pow(2).sum() / t_ref.pow(2).sum()).sqrt().item()
    full = [k for k, n in enumerate(out["count"]) if n]
    num = sum(out["count"][k] * out["error_rms"][k] ** 2 for k in full)
    den = sum(out["count"][k] * out["torque_rms"][k] ** 2 for k in full)
    assert (num / den) ** 0.5 == pytest.approx(total, rel=1e-12)
    with pytest.raises(ValueError, match="edges"):
        error_by_bond_field(spins, fields, ref, lat, edges=(0.0, -1.0))
