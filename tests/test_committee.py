"""The committee: mean prediction and per-site torque spread, checked against closed forms and
finite differences of the mean energy."""
import pytest
import torch

from sdlib import ExactSolver, SDModel, lattice, random_spins
from sdlib.committee import Committee, calibration
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


def test_calibration_of_a_calibrated_spread_lies_on_the_diagonal():
    # errors drawn with the rms the spread says: every bin's rms error equals its rms spread
    g = torch.Generator().manual_seed(3)
    sigma = torch.exp(torch.randn(40000, generator=g, dtype=torch.float64))
    err = (sigma[:, None] * torch.randn(40000, 3, generator=g, dtype=torch.float64) / 3 ** 0.5).norm(dim=-1)
    cal = calibration(sigma, err, n_bins=8)
    assert sum(cal["count"]) == 40000 and cal["spread"] == sorted(cal["spread"])
    assert torch.allclose(torch.tensor(cal["error"]), torch.tensor(cal["spread"]), rtol=0.03)
    assert abs(cal["ratio"] - 1) < 0.02 and cal["rank_corr"] > 0.5
    # a spread too small by 4 ranks the sites as well but its ratio says 4
    small = calibration(sigma / 4, err, n_bins=8)
    assert abs(small["ratio"] - 4) < 0.1 and abs(small["rank_corr"] - cal["rank_corr"]) < 1e-12
    # a spread unrelated to the error: flat bins, no rank correlation
    shuffled = calibration(sigma[torch.randperm(40000, generator=g)], err, n_bins=8)
    assert abs(shuffled["rank_corr"]) < 0.03 and max(shuffled["error"]) / min(shuffled["error"]) < 1.15


def test_calibration_refuses_bad_input():
    with pytest.raises(ValueError, match="one value per site"):
        calibration(torch.ones(5), torch.ones(4))
    with pytest.raises(ValueError, match="n_bins"):
        calibration(torch.ones(5), torch.ones(5), n_bins=6)
    with pytest.raises(ValueError, match="finite"):
        calibration(torch.tensor([1.0, float("nan")]), torch.ones(2), n_bins=1)
    # members that agree exactly: no spread, no ratio or ranking (not a huge number)
    none = calibration(torch.zeros(6), torch.rand(6), n_bins=2)
    assert none["ratio"] is None and none["rank_corr"] is None and none["spread"] == [0.0, 0.0]


def test_shipped_committee_members_are_distinct_networks_of_the_same_physics():
    """The shipped committee: member 0 is the shipped model, the others were trained for the same
    physics on the same lattice with other seeds, so their weights differ and their torques on
    random spins spread, but not by more than the members' own error (chapter 05 measures it)."""
    from sdlib.nn import MLForceField

    name = "square-double-exchange"
    assert name in Committee.shipped_names()
    com = Committee.pretrained(name)
    shipped = MLForceField.pretrained(name)
    assert len(com) >= 4 and com.members[0].weights_sha256 == shipped.weights_sha256
    assert len({m.weights_sha256 for m in com.members}) == len(com)
    for m in com.members[1:]:
        # the μ range of the labels, read from float32 files for the shipped model, agrees to float32 round-off
        assert m.physics["mu_range"] == pytest.approx(shipped.physics["mu_range"], rel=1e-7)
        assert {k: v for k, v in m.physics.items() if k != "mu_range"} == \
            {k: v for k, v in shipped.physics.items() if k != "mu_range"} and m.n_sites == shipped.n_sites
        assert m.provenance["training"]["seed"] != shipped.provenance["training"]["seed"]
    s = random_spins(shipped.n_sites, (2,), seed=11)
    out, spread = com.evaluate(s)
    t_norm = torque(s, out.fields).norm(dim=-1)
    rel = (spread.pow(2).mean() / t_norm.pow(2).mean()).sqrt().item()
    assert 1e-4 < rel < 0.5, rel
    assert torch.allclose(out.fields, torch.stack([m(s).fields for m in com.members]).mean(0), atol=TOL)


def test_a_model_without_a_shipped_committee_is_refused(monkeypatch, tmp_path):
    import sdlib.committee as committee

    monkeypatch.setattr(committee, "COMMITTEE_DIR", tmp_path)
    with pytest.raises(ValueError, match="no committee is shipped for 'square-double-exchange'"):
        Committee.pretrained("square-double-exchange")
    assert Committee.shipped_names() == []
    with pytest.raises(ValueError, match="name must be one of"):
        Committee.pretrained("no-such-model")
