"""The committee: mean prediction and per-site torque spread, checked against closed forms and
finite differences of the mean energy."""
import pytest
import torch

from sdlib import ExactSolver, SDModel, lattice, random_spins
from sdlib.committee import Committee
from sdlib.forcefield import FiniteDifferenceFields, ForceFieldOutput, torque

LAT = lattice.square(4)
TOL = 1e-12


class Scaled:
    """A force field whose energy and fields are ``factor`` times those of ``ff``."""

    def __init__(self, ff, factor):
        self.ff, self.factor, self.n_sites = ff, factor, ff.model.n_sites

    def __call__(self, spins):
        out = self.ff(spins)
        return ForceFieldOutput(self.factor * out.energy, self.factor * out.fields, out.number, out.mu)


def solver(J=4.0):
    return ExactSolver(SDModel(LAT, J=J, mu=0.3, kT=0.2))


def test_spread_of_two_scaled_members_is_half_the_difference():
    """Members T and (1 + a) T: mean (1 + a/2) T, spread |a| |T| / 2 at every site."""
    s = random_spins(LAT.n_sites, (3,), seed=4)
    ed, a = solver(), 0.3
    out, spread = Committee([ed, Scaled(ed, 1 + a)]).evaluate(s)
    t = torque(s, ed(s).fields)
    assert torch.allclose(spread, a / 2 * t.norm(dim=-1), atol=TOL)
    assert torch.allclose(out.fields, (1 + a / 2) * ed(s).fields, atol=TOL)
    assert torch.allclose(out.number, ed(s).number, atol=TOL)  # every member gives N: its mean is kept


def test_identical_members_agree_and_batches_do_not_matter():
    s = random_spins(LAT.n_sites, (5,), seed=5)
    ed = solver()
    c = Committee([ed, ed, ed])
    out, spread = c.evaluate(s)
    assert spread.abs().max() < TOL and torch.allclose(out.energy, ed(s).energy, atol=TOL)
    other = Committee([solver(3.0), solver(5.0)])
    assert torch.allclose(other.spread(s, batch=2), other.spread(s), atol=TOL)


def test_mean_fields_are_minus_gradient_of_mean_energy():
    s = random_spins(LAT.n_sites, seed=6)
    c = Committee([solver(3.0), solver(5.0)])
    fd = FiniteDifferenceFields(c)(s)
    assert torch.allclose(torque(s, c(s).fields), torque(s, fd.fields), atol=1e-7)


def test_bad_committees_are_refused():
    with pytest.raises(ValueError, match="at least 2"):
        Committee([solver()])
    with pytest.raises(ValueError, match="one lattice"):
        Committee([solver(), ExactSolver(SDModel(lattice.square(6), J=4.0, mu=0.3, kT=0.2))])
    with pytest.raises(ValueError, match="batch must be"):
        Committee([solver(), solver(3.0)]).spread(random_spins(LAT.n_sites, (2,), seed=1), batch=0)
