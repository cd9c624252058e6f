"""LLG integrators against analytic solutions, Boltzmann statistics and exact-diagonalisation quenches."""
import math

import pytest
import torch

from sdlib import LLG, ExactSolver, SDModel, analysis, lattice, random_spins
from sdlib.dynamics import EnergyObserver, FunctionObserver, MagnetizationObserver
from sdlib.forcefield import ForceFieldOutput

METHODS = ["midpoint", "heun"]


class Heisenberg:
    """E = -K Σ_bonds S_i·S_j - Σ_i B_i·S_i, fields = -∂E/∂S (a cheap force field for tests)."""

    def __init__(self, lat, K=1.0, B=None):
        self.lat, self.K = lat, K
        self.B = torch.zeros(lat.n_sites, 3, dtype=torch.float64) if B is None else B

    def __call__(self, s):
        nb = s[..., self.lat.neighbors, :].sum(-2)
        fields = self.K * nb + self.B
        energy = -0.5 * self.K * (s * nb).sum((-1, -2)) - (self.B * s).sum((-1, -2))
        return ForceFieldOutput(energy, fields)


class ConstantField:
    """Independent spins in one field B: E = -Σ S·B."""

    def __init__(self, B):
        self.B = torch.as_tensor(B, dtype=torch.float64)

    def __call__(self, s):
        return ForceFieldOutput(-(s @ self.B).sum(-1), self.B.expand_as(s))


@pytest.mark.parametrize("method", METHODS)
def test_norm_preserved_over_thousands_of_steps(method):
    lat = lattice.triangular(6)
    ff = Heisenberg(lat, K=-1.0, B=0.7 * random_spins(lat.n_sites, seed=1))
    s = LLG(ff, dt=0.05, alpha=0.2, kT=0.3, seed=2, method=method).run(random_spins(lat.n_sites, seed=0), 3000)
    assert (s.norm(dim=-1) - 1).abs().max() < 1e-12


@pytest.mark.parametrize("method", METHODS)
def test_single_spin_precession_and_damping_match_analytic_solution(method):
    """dS/dt = -S×B - αS×(S×B) with B = B ẑ: φ(t) = φ0 + B t (counter-clockwise about +B) and
    tan(θ/2) = tan(θ0/2) e^{-αBt} — both exact for the Landau–Lifshitz form."""
    B, theta0, dt, n = 1.3, 1.0, 0.002, 1500
    for alpha in (0.0, 0.3):
        s0 = torch.tensor([[math.sin(theta0), 0.0, math.cos(theta0)]], dtype=torch.float64)
        obs = EnergyObserver(every=10)
        s = LLG(ConstantField([0, 0, B]), dt=dt, alpha=alpha, method=method).run(s0, n, observers=[obs])
        t = n * dt
        theta = 2 * math.atan(math.tan(theta0 / 2) * math.exp(-alpha * B * t))
        expected = torch.tensor([math.sin(theta) * math.cos(B * t), math.sin(theta) * math.sin(B * t), math.cos(theta)])
        assert (s[0] - expected.double()).abs().max() < 1e-5
        e = obs.stacked()
        if alpha > 0:
            assert (e[1:] - e[:-1]).max() <= 1e-14, "damping never raises the energy at T = 0"
        else:  # the Cayley step is an exact rotation about B; Heun conserves E to O(dt²)
            tol = 1e-12 if method == "midpoint" else 10 * dt**2
            assert (e - e[0]).abs().max() < tol, "pure precession conserves the energy"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("T", [0.5, 2.0])
def test_boltzmann_distribution_of_independent_spins(method, T):
    """⟨S·B̂⟩ = coth(B/T) - T/B (Langevin function). Error bar from 10 time blocks of the average."""
    B, n_spins, dt = 1.0, 4000, 0.01
    llg = LLG(ConstantField([0.0, 0.0, B]), dt=dt, alpha=0.5, kT=T, seed=11, method=method)
    s = llg.run(random_spins(n_spins, seed=3), 1000)  # equilibrate: relaxation time ~ 1/(αB) = 2
    obs = FunctionObserver(lambda s, out: s[:, 2].mean(), every=5, name="mz")
    llg.run(s, 1000 + 3000, observers=[obs])
    blocks = obs.stacked()[1:].reshape(10, -1).mean(1)
    mean, err = blocks.mean().item(), blocks.std().item() / math.sqrt(10)
    exact = 1 / math.tanh(B / T) - T / B
    assert abs(mean - exact) < 4 * err, (mean, exact, err)


@pytest.mark.parametrize("corrector_steps", [1, 4])
def test_midpoint_energy_error_falls_as_dt_squared(corrector_steps):
    """α = 0, T = 0: the flow conserves the energy. The converged implicit midpoint rule (4
    corrector iterations) has an O(dt²) energy error; with the default single corrector the error
    falls at least as fast (it is a systematic O(dt³) drift in this test)."""
    lat = lattice.square(4)
    ff = ExactSolver(SDModel(lat, J=2.0, mu=-1.0, kT=0.2))
    s0 = random_spins(lat.n_sites, seed=5)
    drift = []
    for dt in (0.04, 0.02):
        obs = EnergyObserver(every=1)
        llg = LLG(ff, dt=dt, alpha=0.0, method="midpoint", corrector_steps=corrector_steps)
        llg.run(s0, int(round(2.0 / dt)), observers=[obs])
        drift.append((obs.stacked() - obs.values[0]).abs().max().item())
    ratio = drift[0] / drift[1]
    if corrector_steps > 1:
        assert 3.0 < ratio < 5.0, (drift, ratio)
    else:
        assert ratio > 3.0, (drift, ratio)
    assert drift[1] < 1e-4


def test_exact_diagonalisation_quench_turns_antiferromagnetic():
    """Square lattice J = 6, f = 0.485 from random spins: energy falls and NN correlations turn negative."""
    lat = lattice.square(12)
    ff = ExactSolver(SDModel(lat, J=6.0, filling=0.485))
    obs = [EnergyObserver(every=20), FunctionObserver(lambda s, out: analysis.nn_correlation(s, lat), 20, "nn")]
    LLG(ff, dt=0.05, alpha=0.5, seed=0).run(random_spins(lat.n_sites, seed=7), 200, observers=obs)
    e, nn = obs[0].stacked(), obs[1].stacked()
    assert (e[1:] - e[:-1]).max() < 0, "damped T = 0 dynamics lowers the energy"
    assert e[-1] < e[0] - 0.02 * lat.n_sites
    assert abs(nn[0]) < 0.15 and nn[-1] < -0.2


@pytest.mark.parametrize("method", METHODS)
def test_kill_and_resume_is_bit_identical(tmp_path, method):
    lat = lattice.triangular(6)
    ff = Heisenberg(lat, K=-1.0, B=0.3 * random_spins(lat.n_sites, seed=8))
    s0 = random_spins(lat.n_sites, seed=9)
    make = lambda: LLG(ff, dt=0.03, alpha=0.3, kT=0.5, seed=4, method=method)  # noqa: E731
    ref_obs = [EnergyObserver(5), MagnetizationObserver(7)]
    ref = make().run(s0, 60, observers=ref_obs)

    class Kill(EnergyObserver):
        def __call__(self, step, *args):
            if step == 37:
                raise KeyboardInterrupt
            super().__call__(step, *args)

    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        make().run(s0, 60, observers=[Kill(5), MagnetizationObserver(7)], checkpoint=ckpt, checkpoint_every=10)
    obs = [EnergyObserver(5), MagnetizationObserver(7)]
    resumed = make().run(torch.zeros_like(s0), 60, observers=obs, checkpoint=ckpt, checkpoint_every=10)
    assert torch.equal(resumed, ref)
    for a, b in zip(obs, ref_obs):
        assert a.steps == b.steps and torch.equal(a.stacked(), b.stacked())
    with pytest.raises(ValueError, match="checkpoint"):
        LLG(ff, dt=0.01, alpha=0.3, kT=0.5, seed=4, method=method).run(s0, 80, observers=obs, checkpoint=ckpt)
    with pytest.raises(ValueError, match="same every"):  # the records would mix two sampling intervals
        make().run(s0, 80, observers=[EnergyObserver(3), MagnetizationObserver(7)], checkpoint=ckpt)


def test_network_at_fixed_filling_resumes_bit_identical(tmp_path):
    """The square network solves μ* at every evaluation starting from the last μ* it found (a guess
    that saves work); the result must not depend on it: a run killed and resumed, with the guess
    left over from other runs, ends bit-identical to an uninterrupted one."""
    from sdlib.nn import MLForceField

    ff = MLForceField.pretrained("square-double-exchange", lattice.square(8))
    s0 = random_spins(ff.n_sites, seed=3)
    make = lambda: LLG(ff, dt=0.01, alpha=0.5, kT=0.01, seed=2)  # noqa: E731
    ref = make().run(s0, 24)
    ckpt = tmp_path / "run.ckpt"

    class Kill(EnergyObserver):
        def __call__(self, step, *args):
            if step == 13:
                raise KeyboardInterrupt
            super().__call__(step, *args)

    with pytest.raises(KeyboardInterrupt):
        make().run(s0, 24, observers=[Kill(1)], checkpoint=ckpt, checkpoint_every=5)
    ff(random_spins(ff.n_sites, seed=99))  # a stale guess far from this trajectory's μ*
    resumed = make().run(torch.zeros_like(s0), 24, observers=[EnergyObserver(1)], checkpoint=ckpt, checkpoint_every=5)
    assert torch.equal(resumed, ref)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(dt=0.0), "dt"), (dict(dt=float("nan")), "dt"), (dict(alpha=-0.1), "alpha"), (dict(kT=-1.0), "kT"),
     (dict(alpha=0.0, kT=0.1), "alpha > 0"), (dict(method="euler"), "method")],
)
def test_constructor_errors(kwargs, match):
    args = dict(dt=0.01, alpha=0.1, kT=0.0, method="midpoint") | kwargs
    with pytest.raises(ValueError, match=match):
        LLG(ConstantField([0, 0, 1.0]), **args)


def test_wrong_field_shape_and_nan_are_reported():
    bad = lambda s: ForceFieldOutput(s.sum(), s[:, :2])  # noqa: E731
    with pytest.raises(ValueError, match="fields of shape"):
        LLG(bad, dt=0.01, alpha=0.1).run(random_spins(4, seed=0), 3)
    nan = lambda s: ForceFieldOutput(s.sum(), torch.full_like(s, float("nan")))  # noqa: E731
    with pytest.raises(FloatingPointError, match="step 1"):
        LLG(nan, dt=0.01, alpha=0.1).run(random_spins(4, seed=0), 3)


def test_deferred_finiteness_check_still_stops_before_saving(tmp_path):
    """With check_every = k (the GPU default reads the device flag only every 32 steps) a blow-up is
    reported within k steps, naming them, and never written to a checkpoint."""
    calls = []

    def blows_up(s):  # finite fields for the first 9 evaluations (initial + 4 steps), then NaN
        calls.append(1)
        value = 1.0 if len(calls) <= 9 else float("nan")
        return ForceFieldOutput(s.sum(), torch.full_like(s, value))

    llg = LLG(blows_up, dt=0.01, alpha=0.1, check_every=4)
    with pytest.raises(FloatingPointError, match=r"in steps 5\.\.8"):
        llg.run(random_spins(4, seed=0), 20)
    assert llg.step_count == 8
    calls.clear()
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(FloatingPointError, match=r"in steps 4\.\.6"):  # checked at the checkpoints of steps 3 and 6
        LLG(blows_up, dt=0.01, alpha=0.1, check_every=100).run(random_spins(4, seed=0), 20, checkpoint=ckpt,
                                                                 checkpoint_every=3)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 3 and torch.isfinite(state["spins"]).all()
    with pytest.raises(ValueError, match="check_every"):
        LLG(blows_up, dt=0.01, alpha=0.1, check_every=0)
