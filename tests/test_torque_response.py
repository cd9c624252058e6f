"""torque_response: the locality probe of a force field, against a nearest-neighbour model solved by hand."""
import pytest
import torch

from sdlib import lattice
from sdlib.forcefield import ForceFieldOutput, torque_response

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
    g = torch.Generator().manual_seed(1)
    s = torch.randn(lat.n_sites, 3, generator=g, dtype=torch.float64)
    s = s / s.norm(dim=-1, keepdim=True)
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
