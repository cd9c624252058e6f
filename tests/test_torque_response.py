"""torque_response: the locality probe of a force field, against a nearest-neighbour model solved by hand."""
import pytest
import torch

from sdlib import lattice, random_spins
from sdlib.forcefield import ForceFieldOutput
from sdlib.locality import cutoff_sensitivity, torque_response

TOL = 1e-6  # central differences with h = 1e-3 of a quadratic energy: exact up to round-off and O(h²)


class Heisenberg:
    """E = -Σ_<ij> S_i·S_j on the nearest-neighbour bonds: H_i = Σ_{j∈nn(i)} S_j."""

    def __init__(self, lat):
        self.nb = lat.neighbors

    def __call__(self, spins):
        h = spins[..., self.nb, :].sum(-2)
        return ForceFieldOutput(-(spins * h).sum((-1, -2)) / 2, h)


@pytest.mark.parametrize("kind", ["square", "triangular"])
def test_response_of_a_nearest_neighbour_model(kind):
    lat = getattr(lattice, kind)(6)
    s = random_spins(lat.n_sites, seed=1)
    j = 7
    r, rms, share = torque_response(Heisenberg(lat), s, lat, [j])
    assert r[0] == 0 and abs(r[1] - 1) < 1e-12
    assert torch.all(rms[r > 1 + 1e-9] < TOL), "a nearest-neighbour energy must not couple beyond r = 1"
    assert abs(share[1] - 1) < TOL and share[0] < 1
    # by hand: rotating S_j about e_a changes T_i = S_i × H_i by S_i × (e_a × S_j) for i ∈ nn(j)
    eye = torch.eye(3, dtype=torch.float64)
    nbrs = lat.neighbors[j]
    by_hand = sum(torch.linalg.cross(s[i].expand(3, 3), torch.linalg.cross(eye, s[j].expand(3, 3), dim=-1), dim=-1)
                  .pow(2).sum() for i in nbrs) / len(nbrs)
    assert abs(rms[1] ** 2 - by_hand) < TOL


def test_bad_sources_and_step():
    lat = lattice.square(4)
    s = torch.zeros(lat.n_sites, 3, dtype=torch.float64)
    s[:, 2] = 1
    with pytest.raises(ValueError, match="sources"):
        torque_response(Heisenberg(lat), s, lat, [16])
    with pytest.raises(ValueError, match="h must be"):
        torque_response(Heisenberg(lat), s, lat, [0], h=0.0)


@pytest.mark.parametrize("kind", ["square", "triangular"])
@pytest.mark.parametrize("amplitude", [0.5, None])
def test_cutoff_sensitivity_of_a_nearest_neighbour_model(kind, amplitude):
    """T_c = S_c × Σ_nn S_j depends on the spins within r = 1 only: zero beyond, positive inside."""
    lat = getattr(lattice, kind)(6)
    s = random_spins(lat.n_sites, seed=2)
    sens = cutoff_sensitivity(Heisenberg(lat), s, lat, [0, 7, 20], [0.5, 1.0, 1.5], amplitude=amplitude)
    assert sens[0] > 0.1, "perturbing the neighbours must change the torque"
    assert torch.all(sens[1:] < 1e-14)


def test_cutoff_sensitivity_by_hand():
    """R = 0.5 perturbs all neighbours: compare with the same perturbation applied by hand."""
    lat = lattice.square(4)
    s = random_spins(lat.n_sites, seed=3)
    c = 5
    sens = cutoff_sensitivity(Heisenberg(lat), s, lat, [c], [0.5], amplitude=0.3, n_samples=1, seed=11)
    noise = torch.randn((1, 1, *s.shape), generator=torch.Generator().manual_seed(11), dtype=torch.float64)[0, 0]
    moved = s + 0.3 * noise
    moved = moved / moved.norm(dim=-1, keepdim=True)
    moved[c] = s[c]
    t_new = torch.linalg.cross(s[c], moved[lat.neighbors[c]].sum(0), dim=0)
    t_old = torch.linalg.cross(s[c], s[lat.neighbors[c]].sum(0), dim=0)
    assert abs(sens[0] - (t_new - t_old).norm() / t_old.norm()) < 1e-12


def test_cutoff_sensitivity_bad_arguments():
    lat = lattice.square(4)
    s = torch.zeros(lat.n_sites, 3, dtype=torch.float64)
    s[:, 2] = 1
    for kw, msg in [(dict(amplitude=0.0), "amplitude"), (dict(n_samples=0), "n_samples"),
                    (dict(centres=[99]), "centres"), (dict(radii=[-1.0]), "radii")]:
        args = dict(centres=[0], radii=[1.0]) | kw
        with pytest.raises(ValueError, match=msg):
            cutoff_sensitivity(Heisenberg(lat), s, lat, args.pop("centres"), args.pop("radii"), **args)


def test_cutoff_sensitivity_with_replacement_configurations():
    """Far spins taken from another configuration: equal to doing the swap by hand."""
    lat = lattice.triangular(6)
    s, other = random_spins(lat.n_sites, 2, seed=4)
    c = 8
    sens = cutoff_sensitivity(Heisenberg(lat), s, lat, [c], [0.5, 1.0], replacement=other[None])
    swapped = other.clone()
    swapped[c] = s[c]
    t_new = torch.linalg.cross(s[c], swapped[lat.neighbors[c]].sum(0), dim=0)
    t_old = torch.linalg.cross(s[c], s[lat.neighbors[c]].sum(0), dim=0)
    assert abs(sens[0] - (t_new - t_old).norm() / t_old.norm()) < 1e-12 and sens[1] < 1e-14
    with pytest.raises(ValueError, match="replacement"):
        cutoff_sensitivity(Heisenberg(lat), s, lat, [c], [1.0], replacement=other)
