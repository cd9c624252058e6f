"""Trajectory files, atomic writes and the quench-data generator survive interruptions; score files
keep only comparable rows."""
import json

import pytest
import torch

from sdlib import lattice, random_spins
from sdlib.datagen import generate_quench_data
from sdlib.io import TrajectoryWriter, atomic_write, kept_rows, read_trajectory
from tests.test_dynamics import Heisenberg


def frames(n, n_sites=5):
    g = torch.Generator().manual_seed(0)
    for k in range(n):
        s = torch.randn(n_sites, 3, dtype=torch.float64, generator=g)
        yield 10 * k, 0.1 * k, s, 2 * s, float(-k)


def test_round_trip_and_resume_after_a_kill(tmp_path):
    path = tmp_path / "traj.h5"
    data = list(frames(7))
    w = TrajectoryWriter(path, 5, {"J": 6.0})
    for f in data[:4]:
        w.append(*f)
    w.h5.close()  # the process dies: no close(), only the .part file remains
    assert not path.exists()
    partial = read_trajectory(path)
    assert partial["spins"].shape == (4, 5, 3) and partial["params"] == {"J": 6.0}
    with TrajectoryWriter(path, 5) as w2:  # a new writer continues the .part file
        assert w2.last_step == 30
        for f in data[4:]:
            w2.append(*f)
    out = read_trajectory(path)
    assert torch.equal(out["spins"], torch.stack([f[2] for f in data]))
    assert torch.equal(out["fields"], torch.stack([f[3] for f in data]))
    assert out["step"].tolist() == [f[0] for f in data] and out["energy"].tolist() == [f[4] for f in data]
    with pytest.raises(FileExistsError):
        TrajectoryWriter(path, 5)


def test_writer_rejects_wrong_shapes(tmp_path):
    with TrajectoryWriter(tmp_path / "a.h5", 5) as w:
        with pytest.raises(ValueError, match=r"\[5, 3\]"):
            w.append(0, 0.0, torch.zeros(4, 3), torch.zeros(4, 3), 0.0)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w") as fh:
            fh.write("new, half written")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"], "no temporary file left"
    with atomic_write(path, "w") as fh:
        fh.write("new")
    assert path.read_text() == "new"


def test_atomic_write_gives_the_permissions_of_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with atomic_write(tmp_path / "atomic.txt", "w") as fh:
        fh.write("x")
    assert (tmp_path / "atomic.txt").stat().st_mode == plain.stat().st_mode


def test_generate_quench_data_matches_an_llg_run_and_resumes(tmp_path):
    from sdlib import LLG

    lat = lattice.triangular(4)
    ff = Heisenberg(lat, K=-1.0)
    kw = dict(n_steps=40, every=5, dt=0.02, alpha=0.3, kT=0.2, seed=3)
    path = generate_quench_data(ff, lat.n_sites, tmp_path / "q.h5", **kw)
    d = read_trajectory(path)
    assert d["step"].tolist() == list(range(0, 41, 5))
    s0 = random_spins(lat.n_sites, seed=0)  # not the generator's start: check against its own first frame
    assert not torch.equal(d["spins"][0], s0)
    final = LLG(ff, dt=0.02, alpha=0.3, kT=0.2, seed=3).run(d["spins"][0], 40)
    assert torch.equal(final, d["spins"][-1])
    assert torch.allclose(d["fields"][-1], ff(final).fields)
    assert d["params"]["kT"] == 0.2 and d["params"]["every"] == 5


def test_rows_of_other_models_are_kept_for_the_same_reference_only(tmp_path):
    out = tmp_path / "scores.json"
    match = {"reference": "ref", "seeds": [0, 1], "t_end": 40.0}
    assert kept_rows(out, match, ["a"]) == []  # nothing scored yet
    out.write_text(json.dumps(match | {"models": [{"model": "a"}, {"model": "b"}]}))
    assert kept_rows(out, match, ["a"]) == [{"model": "b"}]
    assert kept_rows(out, match, ["c"]) == [{"model": "a"}, {"model": "b"}]
    with pytest.raises(ValueError, match="t_end = 40.0, not t_end = 20.0"):
        kept_rows(out, match | {"t_end": 20.0}, ["a"])
    with pytest.raises(ValueError, match="replayed_to = None"):  # a key the old file lacks differs too
        kept_rows(out, match | {"replayed_to": {"0": 180.0}}, ["a"])
