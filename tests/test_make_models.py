"""The shipped models' recipes (sdlib.datagen.shipped): another exchange coupling (the J sweep of
chapter 04) changes J and nothing else, and data or models of another J are never mixed; the
command line over them parses and refuses what it should."""
import json
import os
import subprocess
import sys

import h5py
import pytest
import torch

from sdlib.datagen.shipped import RECIPES, check_coupling, generate, with_coupling
from sdlib.datagen.shipped_train import split, warm_start_from
from sdlib.io import TrajectoryWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_with_coupling_changes_only_J():
    rec = RECIPES["triangular-tetrahedral"]
    new = with_coupling(rec, 3.0)
    assert new["physics"]["J"] == 3.0 and rec["physics"]["J"] == 2.0  # the recipe itself is untouched
    assert {k: v for k, v in new["physics"].items() if k != "J"} == {k: v for k, v in rec["physics"].items() if k != "J"}
    assert {k: v for k, v in new.items() if k != "physics"} == {k: v for k, v in rec.items() if k != "physics"}


@pytest.mark.parametrize("J", [0.0, -1.0, 25.0])
def test_with_coupling_rejects_out_of_range(J):
    with pytest.raises(ValueError, match="J must lie in"):
        with_coupling(RECIPES["triangular-tetrahedral"], J)


def test_data_of_another_J_refused(tmp_path):
    path = tmp_path / "quench_s1.h5"
    phys = RECIPES["triangular-tetrahedral"]["physics"]
    n = 4
    with TrajectoryWriter(path, n, {"physics": phys}) as w:
        s = torch.zeros(n, 3, dtype=torch.float64)
        s[:, 2] = 1.0
        w.append(0, 0.0, s, s, torch.tensor(0.0, dtype=torch.float64))
    check_coupling([str(path)], phys)  # same J: accepted
    with pytest.raises(ValueError, match="generated at J = 2.0"):
        check_coupling([str(path)], with_coupling(RECIPES["triangular-tetrahedral"], 3.0)["physics"])


def test_init_from_model_of_other_physics_refused(tmp_path):
    from sdlib import lattice
    from sdlib.descriptors import Descriptor
    from sdlib.nn import MLForceField

    lat = lattice.square(8)
    physics = {"lattice": "square", "L": 8, "t": 1.0, "J": 6.0, "filling": 0.485, "kT": 0.0}
    old = MLForceField(Descriptor(lat, cutoff=2.3), hidden=(8, 8), physics=physics | {"J": 3.0})
    old.save(tmp_path / "old")
    new = MLForceField(Descriptor(lat, cutoff=3.5, phase_cutoff=2.3), hidden=(8, 8), physics=physics)
    with pytest.raises(ValueError, match="trained for J = 3.0, this run has 6.0"):
        warm_start_from(new, str(tmp_path / "old"), None, physics)


def test_extra_quenches_train_only_and_leave_the_split(tmp_path):
    """Extra quench trajectories (generate --extra) go to the training set; the validation and test
    quenches (the held-out set of the shipped models) stay exactly as without them."""
    name = "square-double-exchange"
    d = tmp_path / name
    d.mkdir()
    for seed in RECIPES[name]["quench"]["seeds"]:
        (d / f"quench_s{seed}.h5").touch()
    before = split(name, str(tmp_path))
    for seed in RECIPES[name]["extra_quench"]["seeds"]:
        (d / f"extra_quench_s{seed}.h5").touch()
    tr, va, te = split(name, str(tmp_path))
    assert (va, te) == before[1:]
    assert sorted(tr) == sorted(before[0] + [str(p) for p in d.glob("extra_quench_*.h5")])
    with pytest.raises(ValueError, match="no extra_quench"):
        generate("triangular-tetrahedral", str(tmp_path), extra=True)


def cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_models.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_command_line_parses_and_refuses():
    """Smoke test of the thin command line: every stage is listed, --J needs its own data and output."""
    r = cli("--help")
    assert r.returncode == 0 and all(s in r.stdout for s in ("active", "gpu-round", "label-grand", "relabel"))
    r = cli("generate", "triangular-tetrahedral", "--J", "3")
    assert r.returncode == 2 and "--J needs its own --data" in r.stderr
    r = cli("train", "triangular-tetrahedral", "--J", "3", "--data", "elsewhere")
    assert r.returncode == 2 and "train --J needs --out" in r.stderr
    r = cli("active", "square", "--work", "w", "--set", "kT=-1")
    assert r.returncode != 0 and "Recipe.kT" in r.stderr
    r = cli("candidate", "square", "--work", "no-such-run", "--name", "x", "--frames", "120", "--lr", "2e-3",
            "--lr-final", "1e-4", "--init-from", "none")
    assert r.returncode == 2 and "holds no label chunks" in r.stderr


def test_candidate_makes_its_own_labels_on_a_fresh_machine(tmp_path):
    """``candidate --seed-quenches``: held-out frames, round 0 and its labels, then the network and its record."""
    work, rec = tmp_path / "w", tmp_path / "rec"
    r = cli("candidate", "square", "--work", str(work), "--set", "L=8", "--set", "cutoff=3.5", "--set", "frame_times=0.5,1",
            "--set", "bath_kT=0,0.05", "--set", "ordered=2", "--driver", "pretrained", "--seed-quenches", "2",
            "--init-from", "none", "--epochs", "1", "--name", "x", "--device", "cpu", "--record", str(rec),
            "--grad-clip", "3", "--set", "levels=4")
    assert r.returncode == 0, r.stderr
    with h5py.File(work / "round0" / "labels" / "c00000.h5") as h5:  # 2 quenches x 2 baths x 2 times + 2 ordered
        assert h5["fields"].shape[0] == 10
    assert (work / "heldout" / "labels.h5").is_file()
    row = json.loads((rec / "candidates.json").read_text())["networks"]["x"]
    assert sum(row["frames"].values()) == 10 and min(row["frames"].values()) >= 1  # split by content: ~15 % val
    assert row["grad_clip"] == 3.0 and row["levels"] == 4
    # frames of a later quench time, made by a second run (--data-only: no network), added with --also
    late = tmp_path / "late"
    r = cli("candidate", "square", "--work", str(late), "--set", "L=8", "--set", "cutoff=3.5", "--set", "frame_times=1.5", "--set",
            "bath_kT=0,0.05", "--set", "ordered=0", "--driver", "pretrained", "--seed-quenches", "2", "--data-only",
            "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert not (late / "candidates").exists()
    with h5py.File(late / "round0" / "labels" / "c00000.h5") as h5:  # 2 quenches x 2 baths x 1 time
        assert h5["fields"].shape[0] == 4 and sorted(set(h5["time"][...].round(6))) == [1.5]
    r = cli("candidate", "square", "--work", str(work), "--set", "L=8", "--set", "cutoff=3.5", "--also", str(late),
            "--init-from", "none", "--epochs", "1", "--name", "y", "--device", "cpu", "--set", "levels=4")
    assert r.returncode == 0, r.stderr
    prov = json.loads((work / "candidates" / "y" / "member0.json").read_text())["provenance"]
    assert sum(prov["frames"].values()) == 14
    # the grown pool keeps each old frame on its side (sdlib.training.split_by_content)
    assert prov["frames"]["train"] >= row["frames"]["train"] and prov["frames"]["val"] >= row["frames"]["val"]
    assert prov["files"] == ["w/round0/labels/c00000.h5", "late/round0/labels/c00000.h5"]
    r = cli("candidate", "square", "--work", str(work), "--set", "L=8", "--set", "cutoff=3.5", "--also", str(work), "--name", "z")
    assert r.returncode == 2 and "other than work" in r.stderr
    r = cli("candidate", "square", "--work", str(work), "--set", "L=8", "--set", "cutoff=3.5")
    assert r.returncode == 2 and "candidate needs --name" in r.stderr


def test_shipped_pipeline_runs_at_a_tiny_size(tmp_path):
    """generate → label-grand / relabel → train of a shipped recipe, shrunk to a 6 × 6 lattice."""
    from sdlib.datagen.shipped import label_grand, relabel
    from sdlib.datagen.shipped_train import train
    from sdlib.nn import MLForceField

    name = "square-double-exchange"
    rec = RECIPES[name]
    tiny = rec | {"physics": rec["physics"] | {"L": 6},
                  "quench": rec["quench"] | {"n_steps": 4, "every": 2, "seeds": [1, 2, 3, 4, 5], "bath_kT": [0.0] * 5},
                  "random": {"files": [(201, 2)], "uniform": [(203, 2)]},
                  "train_grand": rec["train_grand"] | {"epochs": 2}}
    data, grand, ct = (str(tmp_path / d) for d in ("data", "grand", "ct"))
    torch.set_num_threads(1)
    generate(name, data, recipe=tiny)
    assert len(os.listdir(os.path.join(data, name))) == 7
    label_grand(name, data, grand, [-6.4, -4.0, -2.0], 0.05, recipe=tiny)
    relabel(name, data, ct, {"filling": 0.485}, 0.05, recipe=tiny)
    shipped = os.path.join(ROOT, "sdlib", "data", name)  # a warm start: two epochs cannot teach N(μ) from scratch
    train(name, grand, check_dir=ct, out_dir=str(tmp_path / "model"), recipe=tiny, max_minutes=1.0, init_from=shipped)
    ff = MLForceField.load(tmp_path / "model" / name)
    assert ff.mu_input and ff.physics["L"] == 6 and "held_out_quenches" in ff.provenance["errors"]
    # another committee member: same data and split, its own seed, its own checkpoint (none left behind)
    train(name, grand, check_dir=ct, out_dir=str(tmp_path / "member1"), recipe=tiny, max_minutes=1.0,
          init_from=shipped, seed=1)
    m1 = MLForceField.load(tmp_path / "member1" / name)
    assert m1.provenance["training"]["seed"] == 1 and ff.provenance["training"]["seed"] == 0
    assert m1.provenance["data"] == ff.provenance["data"]  # (both kept the warm start: two epochs do not beat it)
    # the level head (sdlib.levelhead) from random weights: placed levels hold N_e from the start, so the
    # fixed-filling error on held-out quenches is measured after two epochs
    train(name, grand, check_dir=ct, out_dir=str(tmp_path / "levels"), recipe=tiny, max_minutes=1.0, levels=4,
          grad_clip=3.0)
    lv = MLForceField.load(tmp_path / "levels" / name)
    assert lv.net.levels == 4 and lv.provenance["training"]["levels"] == 4 and lv.provenance["clipped_steps"] >= 0
    assert lv.provenance["training"]["grad_clip"] == 3.0
    assert lv.provenance["errors"]["held_out_quenches"]["torque_rel"] > 0
    with pytest.raises(ValueError, match="levels = 4 needs grand-canonical labels"):
        train(name, ct, out_dir=str(tmp_path / "x"), recipe=tiny, levels=4)
    for d in (os.path.join(grand, name), tmp_path / "model", tmp_path / "member1", tmp_path / "levels"):
        assert not [f for f in os.listdir(d) if f.endswith(".ckpt")]
    with pytest.raises(ValueError, match="needs out_dir"):
        train(name, grand, recipe=tiny, seed=2)
    with pytest.raises(ValueError, match="seed must be an integer"):
        train(name, grand, out_dir=str(tmp_path / "m"), recipe=tiny, seed=-1)
