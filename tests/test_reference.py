"""Exact reference quenches (sdlib.datagen.reference): a run split across calls and kills equals one
uninterrupted run bit for bit; replaying the file with the exact solver reproduces it exactly, so a
replay with another force field differs only through the fields; a changed force field is seen;
bad input is refused by name."""
import numpy as np
import pytest
import torch

from sdlib import ExactSolver, random_spins
from sdlib.analysis import nn_correlation
from sdlib import analysis
from sdlib.datagen import SQUARE, TRIANGULAR
from sdlib.datagen.reference import read_reference, reference_paths, replay, replay_chirality, run_reference

SMALL = SQUARE.replace(L=6, cutoff=2.0, phase_cutoff=None)
T_END = 1.0  # 20 steps of dt = 0.05


def quiet(*_):
    pass


def run(out, seeds=(3,), t_end=T_END, **kw):
    return run_reference(SMALL, out, seeds, t_end, bath_kT=0.02, corr_every=2, spins_every=10, checkpoint_every=5,
                         log=quiet, **kw)


def test_run_in_pieces_equals_one_run_and_exact_replay_is_identical(tmp_path):
    assert run(tmp_path / "one") == {3: T_END}
    run(tmp_path / "split", t_end=0.5)
    assert read_reference(tmp_path / "split" / "seed3.pt")["t_reached"] == 0.5
    run(tmp_path / "split")  # continues from its file
    a, b = read_reference(tmp_path / "one" / "seed3.pt"), read_reference(tmp_path / "split" / "seed3.pt")
    assert torch.equal(a["spins"], b["spins"]) and torch.equal(a["corr"], b["corr"])
    assert a["spins"].shape == (3, SMALL.n_sites, 3) and len(a["t"]) == 11  # t = 0, 0.1, ..., 1
    # the first kept configuration is the seeded random state; the records are what they say
    assert torch.equal(a["spins"][0], random_spins(SMALL.n_sites, seed=3))
    lat = SMALL.lattice()
    assert torch.allclose(a["corr"][-1], nn_correlation(a["spins"][-1], lat), rtol=0, atol=1e-14)
    assert torch.allclose(a["energy"][0], ExactSolver(SMALL.dynamics_model())(a["spins"][0]).energy / lat.n_sites,
                          rtol=0, atol=1e-12)
    e = replay(ExactSolver(SMALL.dynamics_model()), tmp_path / "one" / "seed3.pt", lat)
    assert torch.equal(e["spins"], a["spins"]) and torch.equal(e["corr"], a["corr"])


def test_replay_with_another_force_field_differs_through_the_fields_only(tmp_path):
    run(tmp_path, seeds=(0, 1))
    assert [p.name for p in reference_paths(tmp_path)] == ["seed0.pt", "seed1.pt"]
    lat, path = SMALL.lattice(), tmp_path / "seed1.pt"
    other = ExactSolver(SMALL.replace(J=5.0).dynamics_model())
    r, o = read_reference(path), replay(other, path, lat, t_end=0.5)
    assert torch.equal(o["spins"][0], r["spins"][0]) and len(o["t"]) == 6
    assert (o["corr"][1:] - r["corr"][1:6]).abs().max() > 1e-4  # J = 5 instead of 6 is seen at once


def test_perturbed_replay_starts_near_the_reference_and_zero_changes_nothing(tmp_path):
    run(tmp_path)
    lat, path = SMALL.lattice(), tmp_path / "seed3.pt"
    solver = ExactSolver(SMALL.dynamics_model())
    r = read_reference(path)
    zero = replay(solver, path, lat, t_end=0.5, perturb=0.0)
    assert torch.equal(zero["spins"], r["spins"][:len(zero["spins"])])
    a = replay(solver, path, lat, t_end=0.5, perturb=1e-3, perturb_seed=1)
    b = replay(solver, path, lat, t_end=0.5, perturb=1e-3, perturb_seed=1)
    c = replay(solver, path, lat, t_end=0.5, perturb=1e-3, perturb_seed=2)
    assert torch.equal(a["spins"], b["spins"]) and not torch.equal(a["spins"], c["spins"])  # seeded
    d0 = (a["spins"][0] - r["spins"][0]).norm(dim=-1)
    assert torch.allclose(a["spins"][0].norm(dim=-1), torch.ones(lat.n_sites, dtype=torch.float64), atol=1e-14)
    # each spin moved by about perturb (the tangential part of a 3-d normal vector: rms sqrt(2) perturb)
    assert 0.3e-3 < d0.pow(2).mean().sqrt().item() / 2 ** 0.5 < 3e-3 and d0.max() < 1e-2
    for bad in (-1e-3, float("nan"), 2.0):
        with pytest.raises(ValueError, match="perturb"):
            replay(solver, path, lat, t_end=0.5, perturb=bad)


def test_deadline_stops_at_a_checkpoint_and_bad_input_is_refused(tmp_path):
    reached = run(tmp_path, minutes=1e-9)  # the first chunk runs, none after it
    assert 0 < reached[3] < T_END
    with pytest.raises(ValueError, match="beyond the reference quench"):
        replay(ExactSolver(SMALL.dynamics_model()), tmp_path / "seed3.pt", SMALL.lattice(), t_end=T_END)
    for kw, name in (({"t_end": -1.0}, "t_end"), ({"minutes": 0}, "minutes")):
        with pytest.raises(ValueError, match=name):
            run(tmp_path, **kw)
    with pytest.raises(ValueError, match="bath_kT"):
        run_reference(SMALL, tmp_path, (0,), T_END, bath_kT=-0.1)


@pytest.mark.gpu
def test_reference_made_on_a_gpu_replays_on_the_cpu(tmp_path):
    """The exact solver on CUDA, the integrator and its noise on the CPU: the CPU replay follows it."""
    run(tmp_path / "gpu", device="cuda")
    cpu = replay(ExactSolver(SMALL.dynamics_model()), tmp_path / "gpu" / "seed3.pt", SMALL.lattice())
    gpu = read_reference(tmp_path / "gpu" / "seed3.pt")
    assert (cpu["spins"] - gpu["spins"]).abs().max() < 1e-8  # the same noise; fields differ at round-off


def test_replay_chirality_of_the_exact_solver_is_the_reference(tmp_path):
    """On a triangular quench: the exact solver's replay has exactly the reference's chirality length
    and ⟨|χ|⟩ (computed here directly from the file); a perturbed start changes them from t = 0."""
    tri = TRIANGULAR.replace(L=6, cutoff=2.0, phase_cutoff=None, dt=0.25)
    run_reference(tri, tmp_path, (1,), 2.5, bath_kT=0.0, corr_every=2, spins_every=2, checkpoint_every=5,
                  log=quiet)
    lat, path, solver = tri.lattice(), tmp_path / "seed1.pt", ExactSolver(tri.dynamics_model())
    ref = read_reference(path)
    r = replay_chirality(solver, path, lat)
    chi = analysis.chirality(ref["spins"], lat)
    assert r["seed"] == 1 and r["t"].tolist() == ref["spins_t"].tolist() and len(r["t"]) == 6
    assert (r["L_net"] == r["L_exact"]).all() and (r["chi_net"] == r["chi_exact"]).all()
    assert np.allclose(r["L_exact"], analysis.correlation_length(chi, lat).numpy(), rtol=0, atol=0)
    assert np.allclose(r["chi_exact"], chi.abs().mean(-1).numpy(), rtol=0, atol=1e-15)
    assert torch.equal(r["last"][0], chi[-1]) and torch.equal(r["last"][1], chi[-1])
    moved = replay_chirality(solver, path, lat, t_end=1.0, perturb=0.3, perturb_seed=2)
    assert len(moved["t"]) == 3 and abs(moved["chi_net"][0] - moved["chi_exact"][0]) > 1e-3
