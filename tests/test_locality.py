"""sdlib.locality: swap sensitivity of force fields of known range, batches, ensembles, devices, errors."""
import pytest
import torch

from sdlib import ExactSolver, SDModel, lattice, random_spins
from sdlib.forcefield import ForceFieldOutput, torque
from sdlib.locality import ExactTemperatures, cutoff_radius, relative_rms, swap_changes, swap_sensitivity, swapped

TOL = 1e-12  # a force field of range r0 ignores the spins beyond r0 exactly: only round-off remains


class Ranged:
    """E = -½ Σ_{0 < |r_i - r_j| ≤ r0} S_i·S_j (minimum image): H_i = Σ_{0<|r_ij|≤r0} S_j, range r0."""

    def __init__(self, lat, r0):
        d = lat.distances()
        self.W = ((d > 1e-9) & (d <= r0 + 1e-9)).to(torch.float64)

    def __call__(self, spins):
        h = self.W.to(spins) @ spins
        return ForceFieldOutput(-(spins * h).sum((-1, -2)) / 2, h)


def _frames(lat, *shape, seed=0):
    return random_spins(lat.n_sites, shape, seed=seed)


@pytest.mark.parametrize("kind", ["square", "triangular"])
@pytest.mark.parametrize("r0", [1.0, 2.0])
def test_zero_beyond_the_range_and_positive_within(kind, r0):
    lat = getattr(lattice, kind)(8)
    s, other = _frames(lat, 2, seed=1)
    radii = [0.5, r0 - 0.5, r0, r0 + 0.5, 3.5]
    sens = swap_sensitivity(Ranged(lat, r0), s, lat, [0, 9, 30], radii, other[None])
    assert sens.shape == (len(radii),)
    assert torch.all(sens[:2] > 0.05), "spins within the range must change the torque"
    assert torch.all(sens[2:] < TOL), "spins beyond the range must not"


def test_swapped_configurations_by_hand():
    lat = lattice.triangular(6)
    s, other = _frames(lat, 2, seed=2)
    batch = swapped(s, lat, [4, 20], [1.0, 2.0], other[None])
    assert batch.shape == (2, 2, 1, lat.n_sites, 3)
    d = lat.distances([20])[0]
    expect = torch.where((d > 2.0)[:, None], other, s)
    assert torch.allclose(batch[1, 1, 0], expect, atol=1e-15, rtol=0)


def test_batched_frames_equal_one_frame_at_a_time():
    """Frames [F, N, 3] with replacements [F, M, N, 3]: per-sample changes equal separate calls."""
    lat = lattice.square(6)
    ff = Ranged(lat, 2.0)
    frames = _frames(lat, 3, seed=3)
    others = _frames(lat, 3, 2, seed=4)
    changes, reference = swap_changes(ff, frames, lat, [1, 17], [0.5, 1.5], others, chunk=5)
    assert changes.shape == (3, 2, 2, 2) and reference.shape == (3, 2)
    for f in range(3):
        c, r = swap_changes(ff, frames[f], lat, [1, 17], [0.5, 1.5], others[f])
        assert torch.allclose(changes[f], c, atol=TOL) and torch.allclose(reference[f], r, atol=TOL)
    # by hand: frame 2, centre 17, R = 0.5, replacement 1
    d = lat.distances([17])[0]
    moved = torch.where((d > 0.5)[:, None], others[2, 1], frames[2])
    t1, t0 = torque(moved, ff(moved).fields)[17], torque(frames[2], ff(frames[2]).fields)[17]
    assert abs(changes[2, 1, 0, 1] - (t1 - t0).pow(2).sum()) < TOL
    total = swap_sensitivity(ff, frames, lat, [1, 17], [0.5, 1.5], others)
    assert torch.allclose(total, (changes.sum((0, 1, 3)) / (2 * reference.sum())).sqrt(), atol=TOL)


def test_exact_temperatures_equal_the_solver_at_each_temperature():
    lat = lattice.triangular(4)
    s = _frames(lat, 2, seed=5)
    kTs, mu = [0.0, 0.1, 0.3], -2.4194
    out = ExactTemperatures(ExactSolver(SDModel(lat, J=2.0, mu=0.0)), mu, kTs)(s)
    assert out.energy.shape == (2, 3) and out.fields.shape == (2, 3, lat.n_sites, 3)
    for k, kT in enumerate(kTs):
        ref = ExactSolver(SDModel(lat, J=2.0, mu=mu, kT=kT))(s)
        assert torch.allclose(out.fields[:, k], ref.fields, atol=1e-12)
        assert torch.allclose(out.energy[:, k], ref.energy, atol=1e-12)


def test_sensitivity_of_several_ensembles_in_one_evaluation():
    lat = lattice.square(4)
    s, other = _frames(lat, 2, seed=6)
    kTs = [0.0, 0.2]
    both = swap_sensitivity(ExactTemperatures(ExactSolver(SDModel(lat, J=6.0, mu=0.0)), -4.0, kTs),
                            s, lat, [0, 5], [1.0, 1.5], other[None], chunk=3)
    assert both.shape == (2, 2)
    for k, kT in enumerate(kTs):
        one = swap_sensitivity(ExactSolver(SDModel(lat, J=6.0, mu=-4.0, kT=kT)), s, lat, [0, 5], [1.0, 1.5], other[None])
        assert torch.allclose(both[:, k], one, atol=1e-10)


def test_dtype_and_device_follow_the_spins():
    lat = lattice.square(6)
    s, other = _frames(lat, 2, seed=7).float()
    sens = swap_sensitivity(Ranged(lat, 1.0), s, lat, [3], [0.5, 1.0], other[None])
    assert sens.dtype == torch.float32 and sens.device == s.device and sens[1] < 1e-6
    # every tensor is made on the spins' device: the meta device (no data) catches mixing on CPU-only machines
    meta = swap_sensitivity(Ranged(lat, 1.0), s.to("meta"), lat, [3, 9], [0.5, 1.0], other[None].to("meta"))
    assert meta.device.type == "meta" and meta.shape == (2,)
    if torch.cuda.is_available():
        cuda = swap_sensitivity(Ranged(lat, 1.0), s.cuda(), lat, [3], [0.5, 1.0], other[None].cuda())
        assert cuda.device.type == "cuda" and torch.allclose(cuda.cpu(), sens, atol=1e-5)


def test_relative_rms_and_its_jackknife_error():
    g = torch.Generator().manual_seed(8)
    changes, reference = torch.rand(6, 3, generator=g, dtype=torch.float64), torch.rand(6, 1, generator=g,
                                                                                         dtype=torch.float64) + 1
    value, error = relative_rms(changes, reference)
    assert torch.allclose(value, (changes.sum(0) / reference.sum()).sqrt())
    loo = torch.stack([relative_rms(torch.cat([changes[:i], changes[i + 1:]]),
                                    torch.cat([reference[:i], reference[i + 1:]]))[0] for i in range(6)])
    assert torch.allclose(error, (5 / 6 * (loo - loo.mean(0)).pow(2).sum(0)).sqrt())
    assert torch.isnan(relative_rms(changes[:1], reference[:1])[1]).all()


def test_clear_errors():
    lat = lattice.square(4)
    s, other = _frames(lat, 2, seed=9)
    ff = Ranged(lat, 1.0)
    with pytest.raises(ValueError, match="replacement"):
        swap_sensitivity(ff, s, lat, [0], [1.0], other)  # [N, 3]: the M axis is missing
    with pytest.raises(ValueError, match="centres"):
        swap_sensitivity(ff, s, lat, [16], [1.0], other[None])
    with pytest.raises(ValueError, match="radii"):
        swap_sensitivity(ff, s, lat, [0], [-1.0], other[None])
    with pytest.raises(ValueError, match="spins"):
        swap_sensitivity(ff, s[:-1], lat, [0], [1.0], other[None, :-1])
    with pytest.raises(ValueError, match="fields of shape"):
        swap_sensitivity(lambda x: ForceFieldOutput(x.sum(), x[..., :2]), s, lat, [0], [1.0], other[None])
    solver = ExactSolver(SDModel(lat, J=1.0, mu=0.0))
    for args, msg in [((ff, 0.0, [0.1]), "ExactSolver"), ((solver, 0.0, [-0.1]), "kTs"), ((solver, 0.0, []), "kTs"),
                      ((solver, float("nan"), [0.1]), "mu")]:
        with pytest.raises(ValueError, match=msg):
            ExactTemperatures(*args)


def test_cutoff_radius():
    radii = [2.0, 3.0, 4.0, 5.0, 6.0]
    assert cutoff_radius(radii, [0.5, 0.02, 0.05, 0.01, 0.005]) == 5.0  # stays below only from R = 5 on
    assert cutoff_radius(radii, [0.5, 0.2, 0.1, 0.05, 0.04]) is None
    assert cutoff_radius(radii, [0.01] * 5, threshold=0.03) == 2.0
    with pytest.raises(ValueError, match="ascending"):
        cutoff_radius([3.0, 2.0], [0.1, 0.01])
    with pytest.raises(ValueError, match="threshold"):
        cutoff_radius(radii, [0.01] * 5, threshold=0.0)
