"""The level head (sdlib.levelhead): N(μ) rises strictly for any weights, so μ* at fixed filling has
one root; decoupled sites (t = 0) are represented exactly (against exact diagonalisation); the
fields and N are −∂Ω/∂S and −∂Ω/∂μ (finite differences); the fast path equals autograd; float32
stays close to float64; save/load keeps the head; bad arguments are refused by name."""
import pytest
import torch

from sdlib import ExactSolver, SDModel, lattice, random_spins
from sdlib.descriptors import Descriptor
from sdlib.ensemble import number_roots
from sdlib.forcefield import FiniteDifferenceFields
from sdlib.levelhead import spectrum_bound
from sdlib.nn import MLForceField

from .test_fastpath import assert_same, both

TOL = 1e-12  # ED against the exact level representation; fast path against autograd (relative)
TOL_FD = 1e-6
TOL_F32 = 1e-5
PHYSICS = {"t": 1.0, "J": 6.0, "filling": 0.485, "kT": 0.05, "mu_range": [-12.0, 12.0]}

pytestmark = pytest.mark.usefixtures("one_thread")


def level_model(kind="square", L=8, levels=6, seed=0, std=0.1, physics=PHYSICS, check_norm=True):
    """A level-head model with random weights and a non-trivial feature normalisation."""
    torch.manual_seed(seed)
    ff = MLForceField(Descriptor(getattr(lattice, kind)(L)), hidden=(16, 12), physics=physics,
                      mu_input=True, levels=levels, check_norm=check_norm)
    with torch.no_grad():
        for p in ff.net.parameters():
            p.add_(torch.randn_like(p) * std)
        ff.net.feature_mean.normal_()
        ff.net.feature_std.uniform_(0.5, 2.0)
        ff.net.energy_scale.fill_(1.7)
        ff.net.energy_shift.fill_(-0.3)
    return ff


@pytest.mark.parametrize("seed", range(4))
def test_number_rises_strictly_and_mu_star_is_unique(seed):
    # random weights: levels and weights vary strongly with the spins; μ across the whole spectrum
    ff = level_model(seed=seed, std=0.3)
    spins = random_spins(ff.n_sites, batch=2, seed=seed)
    mus = torch.linspace(*ff.physics["mu_range"], 901, dtype=torch.float64)
    state = ff.grand_state(spins)
    n = torch.stack([state.number(m.expand(2)) for m in mus])
    assert (n.diff(dim=0) >= 0).all() and (n[-1] - n[0] > 1).all()  # rises, and not only by a flat step
    per_site = ff.grand(spins, mus[450].expand(2)).number / ff.n_sites
    assert ((per_site > 0) & (per_site < 2)).all()  # n_i in (0, 2): two states per site
    target = int((n[0, 0] + n[-1, 0]) / 2)
    (found,) = number_roots(ff.grand_state(spins[0]), target, mus)
    assert len(found["roots"]) == 1 and found["rising"] == [True] and found["largest_drop"] == 0.0


def test_decoupled_sites_are_represented_exactly():
    """t → 0: every site holds the two levels ±J of -J S·σ, so the head with e = ±J, w = (1, 1) and
    zero offset is the exact Ω(μ) and N(μ) of exact diagonalisation, at every μ and kT (the reference
    has t = 1e-9, which moves the levels by ~t²/J, far below the tolerance)."""
    physics = {"t": 0.0, "J": 2.0, "mu": 0.0, "kT": 0.3, "mu_range": [-4.0, 4.0]}
    ff = MLForceField(Descriptor(lattice.triangular(6)), hidden=(4,), physics=physics, mu_input=True, levels=2)
    W = spectrum_bound("triangular", 0.0, 2.0)
    with torch.no_grad():
        out = ff.net.mlp[-1]
        out.weight.zero_()
        out.bias.copy_(torch.tensor([0.0, -2.0 / W, 2.0 / W, 0.0, 0.0], dtype=torch.float64))
        ff.net.energy_shift.zero_()
    spins = random_spins(ff.n_sites, batch=2, seed=3)
    model = SDModel(lattice.triangular(6), t=1e-9, J=2.0, mu=0.0, kT=0.3)
    mus = torch.tensor([-2.7, -0.4, 0.0, 1.9], dtype=torch.float64)
    ref = ExactSolver(model).grand_labels(spins, mus, kT=0.3)
    for k, mu in enumerate(mus):
        got = ff.grand(spins, mu)
        assert torch.allclose(got.energy, ref["energy"][:, k], rtol=TOL, atol=TOL * ff.n_sites)
        assert torch.allclose(got.number, ref["number"][:, k], rtol=TOL, atol=TOL * ff.n_sites)


@pytest.mark.parametrize("kind", ["square", "triangular"])
def test_fast_path_equals_autograd(kind):
    ff = level_model(kind)
    spins = random_spins(ff.n_sites, batch=3, seed=2)
    mu = torch.tensor([-5.0, -4.6, -4.2], dtype=torch.float64)
    assert_same(*both(ff, lambda m: m.grand(spins, mu)))
    assert_same(*both(ff, lambda m: m.grand(spins[0], -4.4)))
    assert_same(*both(ff, lambda m: m(spins)))  # fixed filling: μ* then the fields


def test_fields_and_number_are_derivatives_of_omega():
    physics = PHYSICS | {"lattice": "triangular", "t": 1.0, "J": 2.0, "kT": 0.1}
    ff = level_model("triangular", L=6, physics=physics, check_norm=False)
    spins = random_spins(ff.n_sites, seed=5)
    mu, h = -2.4, 1e-5
    for fast in (True, False):
        ff.fast = fast
        out = ff.grand(spins, mu)
        fd = FiniteDifferenceFields(lambda s: ff.grand(s, mu), h=h, mode="cartesian", chunk=512)(spins)
        assert (out.fields - fd.fields).abs().max() <= TOL_FD * out.fields.abs().max()
        dn = -(ff.grand(spins, mu + h).energy - ff.grand(spins, mu - h).energy) / (2 * h)
        assert abs(dn - out.number) <= TOL_FD * out.number.abs()


def test_float32_is_close_to_float64():
    ff = level_model()
    spins = random_spins(ff.n_sites, batch=2, seed=7)
    ref = ff(spins)
    got = ff.to(torch.float32)(spins.float())
    assert (got.mu - ref.mu).abs().max() <= TOL_F32 * ref.mu.abs().max()
    assert (got.fields.double() - ref.fields).abs().max() <= TOL_F32 * ref.fields.abs().max()


def test_save_load_keeps_the_head(tmp_path):
    ff = level_model()
    ff.save(tmp_path / "m")
    back = MLForceField.load(tmp_path / "m", lattice=lattice.square(10))
    assert back.net.levels == ff.net.levels and back.config()["levels"] == 6
    assert torch.equal(back.net.level_width, ff.net.level_width)
    same = MLForceField.load(tmp_path / "m", lattice=lattice.square(8))
    spins = random_spins(ff.n_sites, seed=1)
    assert torch.equal(same(spins).fields, ff(spins).fields)


def test_fit_normalization_centres_the_energy():
    """After fitting, the mean predicted Ω/N at the mean μ equals the mean label, and the untrained
    head holds about the labels' electrons there."""
    ff = level_model()
    spins = random_spins(ff.n_sites, batch=3, seed=4)
    feats = ff.descriptor(spins)
    energy = torch.tensor([-5.1, -5.3, -4.9], dtype=torch.float64)
    mu = torch.full((3,), -4.6, dtype=torch.float64)
    ff.net.fit_normalization(feats, energy, 2.5, mu, torch.full((3,), 0.97, dtype=torch.float64))
    assert ff.net.energy_scale.item() == 2.5
    got = ff.grand(spins, mu)
    assert abs(got.energy.mean() / ff.n_sites - energy.mean()) < 1e-10
    # the levels start where the labels' electrons are: ≈ 0.97 per site at the mean μ (levels of
    # weight 2/K; the random weights move each a little)
    assert (got.number / ff.n_sites - 0.97).abs().max() < 2 * 2 / ff.net.levels


def test_bad_arguments_are_refused():
    desc = Descriptor(lattice.square(8))
    with pytest.raises(ValueError, match="levels"):
        MLForceField(desc, physics=PHYSICS, mu_input=True, levels=-1)
    with pytest.raises(ValueError, match="levels"):
        MLForceField(desc, levels=3)  # needs mu_input
    with pytest.raises(ValueError, match="kT"):
        MLForceField(desc, physics=PHYSICS | {"kT": 0.0}, mu_input=True, levels=3)
    with pytest.raises(ValueError, match="width"):
        level_model().net.set_spectrum(0.0, -1.0, 0.1)


def test_recipe_builds_level_members():
    from sdlib.datagen import study
    from sdlib.datagen.committee import _member

    recipe = study("square").dry_run().with_settings(["levels=8"])
    ff = _member(recipe, "cpu")
    assert ff.net.levels == 8 and ff.net.level_kT.item() == recipe.kT
    assert ff.net.level_width.item() == spectrum_bound("square", recipe.t, recipe.J)
    with pytest.raises(ValueError, match="levels"):
        recipe.replace(kT=0.0, mus=(recipe.mus[0],))
    with pytest.raises(ValueError, match="levels"):
        recipe.replace(levels=-2)


def test_float32_training_gradients_are_finite():
    """Levels far below μ ((μ − e)/T_e ≈ 10²: exp overflows float32) must not poison the double
    backward of training; the float32 weight gradients follow the float64 ones."""
    ff = level_model(std=0.0)
    with torch.no_grad():  # one level ~10 t below μ, at T_e = 0.05
        ff.net.mlp[-1].bias[1] = (ff.net.level_center - 15.0) / ff.net.level_width
    spins = random_spins(ff.n_sites, batch=2, seed=9)
    grads = {}
    for dtype in (torch.float64, torch.float32):
        f = ff.to(dtype)
        f.net.zero_grad()
        f.grand(spins.to(dtype), torch.tensor([-4.7, -4.5], dtype=dtype), create_graph=True).fields.pow(2).sum().backward()
        grads[dtype] = torch.cat([p.grad.reshape(-1).double() for p in f.net.parameters()])
    assert torch.isfinite(grads[torch.float32]).all()
    g64 = grads[torch.float64]
    assert (grads[torch.float32] - g64).norm() <= 1e-4 * g64.norm()


def test_canonical_fields_solve_the_filling_frame_by_frame():
    # each frame's own μ*: N(μ*) = N_e, and the fields are those of the fixed-filling call
    from sdlib.datagen.candidates import canonical_fields

    ff = level_model()
    spins = random_spins(ff.n_sites, batch=3, seed=5)
    fields, mu, failed = canonical_fields(ff, spins)
    assert failed == [] and fields.shape == spins.shape and mu.shape == (3,)
    n = torch.stack([ff.grand(spins[i], mu[i]).number for i in range(3)])
    assert torch.allclose(n, torch.full_like(n, float(ff.n_electrons)), atol=1e-6)
    ref = ff(spins)
    assert (fields - ref.fields).abs().max() <= 1e-9 * ref.fields.abs().max()
    assert torch.allclose(mu, ref.mu, atol=1e-9)
    plain = MLForceField(Descriptor(lattice.square(8)), hidden=(8,), physics={"t": 1.0, "J": 6.0, "mu": -4.0, "kT": 0.0})
    with pytest.raises(ValueError, match="needs a mu-input network used at fixed filling"):
        canonical_fields(plain, spins)
