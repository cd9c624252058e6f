"""The data/training script of the shipped models: its ``--J`` option (the J sweep of chapter 04)
must change the exchange coupling and nothing else, and must never mix data or models of another J."""
import importlib.util
import os

import pytest
import torch

from sdlib.io import TrajectoryWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def mm():
    spec = importlib.util.spec_from_file_location("make_models", os.path.join(ROOT, "scripts", "make_models.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_with_coupling_changes_only_J(mm):
    rec = mm.RECIPES["triangular-tetrahedral"]
    new = mm.with_coupling(rec, 3.0)
    assert new["physics"]["J"] == 3.0 and rec["physics"]["J"] == 2.0  # the recipe itself is untouched
    assert {k: v for k, v in new["physics"].items() if k != "J"} == {k: v for k, v in rec["physics"].items() if k != "J"}
    assert {k: v for k, v in new.items() if k != "physics"} == {k: v for k, v in rec.items() if k != "physics"}


@pytest.mark.parametrize("J", [0.0, -1.0, 25.0])
def test_with_coupling_rejects_out_of_range(mm, J):
    with pytest.raises(SystemExit, match="--J must lie in"):
        mm.with_coupling(mm.RECIPES["triangular-tetrahedral"], J)


def test_J_needs_own_data_and_out(mm, capsys):
    with pytest.raises(SystemExit):
        mm.main(["generate", "triangular-tetrahedral", "--J", "3"])
    assert "--J needs its own --data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mm.main(["train", "triangular-tetrahedral", "--J", "3", "--data", "elsewhere"])
    assert "train --J needs --out" in capsys.readouterr().err


def test_data_of_another_J_refused(mm, tmp_path):
    path = tmp_path / "quench_s1.h5"
    phys = mm.RECIPES["triangular-tetrahedral"]["physics"]
    n = 4
    with TrajectoryWriter(path, n, {"physics": phys}) as w:
        s = torch.zeros(n, 3, dtype=torch.float64)
        s[:, 2] = 1.0
        w.append(0, 0.0, s, s, torch.tensor(0.0, dtype=torch.float64))
    mm._check_coupling([str(path)], phys)  # same J: accepted
    with pytest.raises(SystemExit, match="generated at J = 2.0"):
        mm._check_coupling([str(path)], mm.with_coupling(mm.RECIPES["triangular-tetrahedral"], 3.0)["physics"])


def test_init_from_model_of_other_physics_refused(mm, tmp_path):
    from sdlib import lattice
    from sdlib.descriptors import Descriptor
    from sdlib.nn import MLForceField

    lat = lattice.square(8)
    physics = {"lattice": "square", "L": 8, "t": 1.0, "J": 6.0, "filling": 0.485, "kT": 0.0}
    old = MLForceField(Descriptor(lat, cutoff=2.3), hidden=(8, 8), physics=physics | {"J": 3.0})
    old.save(tmp_path / "old")
    new = MLForceField(Descriptor(lat, cutoff=3.5, phase_cutoff=2.3), hidden=(8, 8), physics=physics)
    with pytest.raises(SystemExit, match="trained for J = 3.0, this run has 6.0"):
        mm._warm_start(new, str(tmp_path / "old"), None, physics)


def test_extra_quenches_train_only_and_leave_the_split(mm, tmp_path):
    """Extra quench trajectories (generate --extra) go to the training set; the validation and test
    quenches (the held-out set of the shipped models) stay exactly as without them."""
    name = "square-double-exchange"
    d = tmp_path / name
    d.mkdir()
    for seed in mm.RECIPES[name]["quench"]["seeds"]:
        (d / f"quench_s{seed}.h5").touch()
    before = mm._split(name, str(tmp_path))
    for seed in mm.RECIPES[name]["extra_quench"]["seeds"]:
        (d / f"extra_quench_s{seed}.h5").touch()
    tr, va, te = mm._split(name, str(tmp_path))
    assert (va, te) == before[1:]
    assert sorted(tr) == sorted(before[0] + [str(p) for p in d.glob("extra_quench_*.h5")])
    with pytest.raises(SystemExit, match="no extra_quench"):
        mm.generate("triangular-tetrahedral", str(tmp_path), extra=True)
