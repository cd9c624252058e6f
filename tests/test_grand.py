"""Force fields with the chemical potential as input: grand-canonical labels from ED, the μ-input
network (N = -∂Ω/∂μ, fields at fixed μ), fixed filling through the solved μ (Legendre transform),
training on labels at several μ, persistence and bad input."""
import json
import math
import os

import pytest
import torch
from tests.test_nn import ShellBondDescriptor

from sdlib import ExactSolver, SDModel, lattice, random_spins
from sdlib.forcefield import FiniteDifferenceFields, torque
from sdlib.io import read_grand_labels, write_grand_labels
from sdlib.nn import MLForceField
from sdlib.training import GrandDataset, batch_losses, evaluate, fit_normalization, split_by_trajectory, train

TOL = 1e-10         # identities that hold to rounding
TOL_FD = 1e-6       # central finite differences, h = 1e-5
LEARN_FACTOR = 10.0
LAT = lattice.square(6)
KT, J, FILLING = 0.5, 4.0, 0.375  # 27 of 72 spin orbitals


pytestmark = pytest.mark.usefixtures("one_thread")


def configurations(n, seed):
    """From disordered to nearly ferromagnetic, ``[n, 16, 3]``."""
    s = random_spins(LAT.n_sites, (n,), seed=seed)
    s = s + torch.linspace(0, 2.5, n)[:, None, None] * torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    return s / s.norm(dim=-1, keepdim=True)


def canonical_solver():
    return ExactSolver(SDModel(LAT, t=1.0, J=J, filling=FILLING, kT=KT))


E0, E1, T_TEACHER = -1.0, 0.4, 0.5  # teacher: one level per site at E0 - E1·b_i, b_i = Σ_nn S_i·S_j
TEACHER_FILLING = 0.7                # reached inside mu_grid by every configuration below


def teacher(spins, mu):
    """A local grand potential with a closed form: two degenerate levels per site at
    e_i = E0 - E1·b_i, Ω = -2 T Σ_i ln(1 + e^{(μ - e_i)/T}); returns Ω, fields -∂Ω/∂S, N = -∂Ω/∂μ."""
    s = spins.detach().requires_grad_(True)
    m = torch.as_tensor(mu, dtype=torch.float64).expand(spins.shape[:-2]).clone().requires_grad_(True)
    b = (s[..., :, None, :] * s[..., LAT.neighbors, :]).sum((-1, -2))
    omega = -2 * T_TEACHER * torch.nn.functional.softplus((m[..., None] - (E0 - E1 * b)) / T_TEACHER).sum(-1)
    gs, gm = torch.autograd.grad(omega.sum(), (s, m))
    return omega.detach(), -gs, -gm


def teacher_labels(spins, mus):
    outs = [teacher(spins, mu) for mu in mus]
    return {"spins": spins, "mu": torch.tensor(mus, dtype=torch.float64),
            **{k: torch.stack([o[j] for o in outs], 1) for j, k in enumerate(("energy", "fields", "number"))}}


@pytest.fixture(scope="module")
def mu_grid():
    return torch.linspace(-2.4, -0.2, 7, dtype=torch.float64).tolist()


@pytest.fixture(scope="module")
def label_files(tmp_path_factory, mu_grid):
    d = tmp_path_factory.mktemp("grand")
    return [str(write_grand_labels(os.path.join(d, f"traj{k}.h5"), teacher_labels(configurations(10, 300 + k), mu_grid),
                                   {"seed": 300 + k})) for k in range(6)]


def physics(mu_grid, **ens):
    return {"t": 1.0, "J": J, "kT": KT, "L": 6, "mu_range": [min(mu_grid), max(mu_grid)]} | (ens or {"filling": TEACHER_FILLING})


def make_ff(mu_grid, seed=0, **ens):
    torch.manual_seed(seed)
    return MLForceField(ShellBondDescriptor(LAT), hidden=(16, 16), physics=physics(mu_grid, **ens), mu_input=True)


@pytest.fixture(scope="module")
def trained(label_files, mu_grid):
    tr, va, _ = split_by_trajectory(label_files, val=0.2, test=0.2, seed=0)
    train_set, val_set = GrandDataset(tr), GrandDataset(va)
    ff = make_ff(mu_grid)
    fit_normalization(ff, train_set)
    before = batch_losses(ff, val_set.batch(torch.arange(len(val_set))), create_graph=False) + (evaluate(ff, val_set),)
    hist = train(ff, train_set, val_set, epochs=40, batch_size=6, lr=1e-2, lr_final=5e-4, progress=False,
                 patience=40, energy_weight_final=1.0)
    return ff, val_set, before, hist


def teacher_mu(spins, n_electrons):
    """μ* of the teacher at fixed electron number, by scipy's brentq (independent of ``solve_mu``)."""
    from scipy.optimize import brentq

    return torch.tensor([brentq(lambda m: float(teacher(x, m)[2]) - n_electrons, -20, 20, xtol=1e-13) for x in spins],
                        dtype=torch.float64)


def test_grand_labels_match_the_fixed_mu_solver_and_the_legendre_identity(mu_grid):
    s = configurations(3, 7)
    ed = ExactSolver(SDModel(LAT, t=1.0, J=J, mu=0.0, kT=KT))
    lab = ed.grand_labels(s, mu_grid, KT)
    h = 1e-5
    for k, mu in enumerate(mu_grid):
        ref = ExactSolver(SDModel(LAT, t=1.0, J=J, mu=mu, kT=KT))
        out = ref(s)
        assert torch.allclose(lab["fields"][:, k], out.fields, atol=TOL) and torch.allclose(lab["energy"][:, k], out.energy, atol=TOL)
        assert torch.allclose(lab["number"][:, k], ref.densities(s).sum(-1), atol=1e-9)
        om = [ExactSolver(SDModel(LAT, t=1.0, J=J, mu=mu + d, kT=KT))(s).energy for d in (h, -h)]
        assert torch.allclose(lab["number"][:, k], -(om[0] - om[1]) / (2 * h), atol=TOL_FD)
    # fixed filling at kT > 0 = fixed μ at the solved μ*: the premise of the μ-input model
    can = canonical_solver()
    mu_star = can.chemical_potential(s)
    for b in range(3):
        at = ed.grand_labels(s[b], [float(mu_star[b])], KT)
        assert torch.allclose(at["fields"][0], can(s[b]).fields, atol=1e-9)
        assert abs(float(at["number"][0]) - can.model.n_electrons) < 1e-9
        assert abs(float(at["energy"][0]) + float(mu_star[b]) * can.model.n_electrons - float(can(s[b]).energy)) < 1e-9
    with pytest.raises(ValueError, match="kT must be > 0"):
        ed.grand_labels(s, mu_grid, 0.0)


def test_number_and_fields_are_derivatives_of_the_grand_potential(mu_grid):
    ff = make_ff(mu_grid, mu=float(mu_grid[2]))
    with torch.no_grad():
        ff.net.number_shift.fill_(0.7)
        ff.net.mu_std.fill_(0.5)
    s = configurations(2, 11)
    mu = torch.tensor([mu_grid[1], mu_grid[3]], dtype=torch.float64)
    out = ff.grand(s, mu)
    h = 1e-5
    n_fd = -(ff.grand(s, mu + h).energy - ff.grand(s, mu - h).energy) / (2 * h)
    assert torch.allclose(out.number, n_fd, atol=TOL_FD * LAT.n_sites)
    fd = FiniteDifferenceFields(ff)(s[0])  # ff at its fixed physics["mu"]
    assert torch.allclose(torque(s[0], fd.fields), torque(s[0], ff.grand(s[0], mu_grid[2]).fields), atol=TOL_FD)
    # one μ for the whole batch = the same μ given per configuration
    assert torch.allclose(ff.grand(s, mu_grid[1]).number, ff.grand(s, torch.full((2,), mu_grid[1])).number, atol=TOL)


def test_training_lowers_validation_loss_and_learns_the_fixed_filling_fields(trained):
    ff, val_set, before, hist = trained
    after = batch_losses(ff, val_set.batch(torch.arange(len(val_set))), create_graph=False)
    assert after[0].item() <= before[0].item() / LEARN_FACTOR, (before, after)
    assert after[1].item() <= before[1].item() / LEARN_FACTOR, (before, after)
    err = evaluate(ff, val_set)
    assert err["torque_rel"] < 1 / math.sqrt(LEARN_FACTOR)
    assert err["number_rmse_per_site"] < before[2]["number_rmse_per_site"] / math.sqrt(LEARN_FACTOR)
    # the fixed-filling model against the teacher at fixed N_e, an ensemble it never saw
    s = val_set.spins
    mu_ref = teacher_mu(s, ff.n_electrons)
    _, h_ref, _ = teacher(s, mu_ref)
    assert (ff.solve_mu(s) - mu_ref).abs().max() < (mu_ref.max() - mu_ref.min()) / math.sqrt(LEARN_FACTOR)
    rel = (torque(s, ff(s).fields) - torque(s, h_ref)).norm() / torque(s, h_ref).norm()
    assert rel < 1 / math.sqrt(LEARN_FACTOR)


def test_fixed_filling_conserves_electrons_and_fields_are_minus_gradient_of_free_energy(trained):
    ff = trained[0]
    s = configurations(2, 21)
    mu = ff.solve_mu(s)
    assert torch.allclose(ff.grand(s, mu).number, torch.full((2,), float(ff.n_electrons), dtype=torch.float64), atol=1e-7)
    out, fd = ff(s[0]), FiniteDifferenceFields(ff)(s[0])
    assert torch.allclose(torque(s[0], out.fields), torque(s[0], fd.fields), atol=TOL_FD)
    # F = Ω(μ*) + μ* N_e; Ω(μ*) alone would not be the potential of these fields
    omega_only = lambda x: type(out)(ff.grand(x, ff.solve_mu(x)).energy, out.fields)  # noqa: E731
    fd_omega = FiniteDifferenceFields(omega_only)(s[0])
    assert (torque(s[0], out.fields) - torque(s[0], fd_omega.fields)).abs().max() > 100 * TOL_FD


def test_spin_rotation_leaves_energy_number_and_mu_invariant(trained):
    ff = trained[0]
    s = configurations(2, 31)
    R = torch.linalg.matrix_exp(torch.tensor([[0, -0.3, 0.8], [0.3, 0, -0.5], [-0.8, 0.5, 0]], dtype=torch.float64))
    a, b = ff.grand(s, ff.solve_mu(s)), ff.grand(s @ R.T, ff.solve_mu(s @ R.T))
    assert torch.allclose(a.energy, b.energy, atol=TOL) and torch.allclose(a.number, b.number, atol=TOL)
    assert torch.allclose(a.fields @ R.T, b.fields, atol=TOL)


def test_save_load_round_trip_and_bad_input(trained, tmp_path, mu_grid):
    ff = trained[0]
    wpath, cpath = ff.save(tmp_path / "m")
    assert json.load(open(cpath))["mu_input"] is True
    back = MLForceField.load(tmp_path / "m")
    s = configurations(2, 41)
    assert back.mu_input and torch.equal(back(s).fields, ff(s).fields) and torch.equal(back.solve_mu(s), ff.solve_mu(s))
    f32 = MLForceField.load(tmp_path / "m", dtype=torch.float32)  # the μ solve stops at float32 resolution
    assert ((f32(s.float()).fields.double() - ff(s).fields).norm() / ff(s).fields.norm()) < 1e-4
    lo, hi = ff.physics["mu_range"]
    with pytest.raises(ValueError, match=r"mu must be .* inside the range"):
        ff.grand(s, hi + 1.0)
    with pytest.raises(ValueError, match="mu_range"):
        MLForceField(ShellBondDescriptor(LAT), physics={"t": 1.0, "J": J, "kT": KT, "filling": 0.3}, mu_input=True)
    with pytest.raises(ValueError, match="filling=0.97"):
        far = MLForceField.load(tmp_path / "m")
        far.physics["filling"] = 0.97
        far(s)
    plain = MLForceField(ShellBondDescriptor(LAT), physics={"t": 1.0, "J": J, "kT": KT, "filling": 0.3})
    with pytest.raises(ValueError, match="mu_input=True"):
        plain.grand(s, 0.0)
    with pytest.raises(ValueError, match="pass mu"):
        ff.site_energies(s)


def test_label_files_and_dataset(label_files, mu_grid, tmp_path):
    d = read_grand_labels(label_files[0])
    assert d["fields"].shape == (10, len(mu_grid), LAT.n_sites, 3) and d["params"] == {"seed": 300}
    ds = GrandDataset(label_files[:2])
    b = ds.batch(torch.arange(8))
    k = torch.arange(8) % len(mu_grid)
    assert torch.equal(b["mu"], ds.mu[k]) and torch.equal(b["fields"], ds.fields[torch.arange(8), k])
    assert torch.equal(ds.batch(torch.arange(8), seed=5)["mu"], ds.batch(torch.arange(8), seed=5)["mu"])
    bad = {k: v for k, v in d.items() if k != "params"} | {"number": d["number"][:, :2]}
    with pytest.raises(ValueError, match="number"):
        write_grand_labels(tmp_path / "bad.h5", bad)
    assert os.listdir(tmp_path) == []  # nothing half-written
    other = write_grand_labels(tmp_path / "other.h5", {k: v for k, v in d.items() if k != "params"} | {"mu": d["mu"] + 0.1})
    with pytest.raises(ValueError, match="one mu grid"):
        GrandDataset([label_files[0], other])
    # the same grid rounded to float32 (as older label files hold it) is the same grid
    f32 = write_grand_labels(tmp_path / "f32.h5", {k: v for k, v in d.items() if k != "params"}
                             | {"mu": (d["mu"] + 1e-7).float().double()})
    assert torch.equal(GrandDataset([label_files[0], f32]).mu, ds.mu)


def test_dataset_window_pairs_each_configuration_with_mu_near_its_own_mu_star(label_files, mu_grid):
    n_e = round(2 * LAT.n_sites * TEACHER_FILLING)
    ds = GrandDataset(label_files[:2], n_electrons=n_e, window=0.5)
    exact = teacher_mu(ds.spins, n_e)
    step = mu_grid[1] - mu_grid[0]
    assert (ds.mu_star - exact).abs().max() < 0.1 * step  # linear interpolation of N(μ) on the grid
    for seed in (None, 1, 2):
        mu = ds.batch(torch.arange(len(ds)), seed=seed)["mu"]
        assert ((mu - ds.mu_star).abs() <= max(0.5, step) + 1e-12).all()
    assert (ds.allowed.sum(1) >= 2).all() and not ds.allowed.all()
    with pytest.raises(ValueError, match="both n_electrons and window"):
        GrandDataset(label_files[:1], n_electrons=n_e)
