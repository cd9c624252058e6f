"""Exact-diagonalisation force field: Hellmann–Feynman fields, symmetry, external reference data."""
from pathlib import Path

import numpy as np
import pytest
import torch

from sdlib import ExactSolver, FiniteDifferenceFields, SDModel, lattice, random_spins
from sdlib.forcefield import perpendicular

TOL_FD = 1e-7  # central differences with h = 1e-5: error O(h²) ≈ 1e-10 plus round-off
DATA = Path(__file__).parent / "data" / "square-double-exchange"

ENSEMBLES = [
    dict(mu=-0.7),
    dict(mu=-0.7, kT=0.3),
    dict(filling=0.3),
    dict(filling=0.3, kT=0.3),
]


def random_rotation(seed):
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    q = q * torch.sign(torch.diagonal(r))
    return q * torch.det(q)  # proper rotation


@pytest.mark.parametrize("kind", ["square", "triangular"])
@pytest.mark.parametrize("ens", ENSEMBLES, ids=lambda e: "-".join(f"{k}={v}" for k, v in e.items()))
def test_fields_equal_finite_differences(kind, ens):
    lat = getattr(lattice, kind)(4)
    model = SDModel(lat, J=2.0, **ens)
    S = random_spins(lat.n_sites, seed=11)
    out = ExactSolver(model)(S)
    # rotations of single spins keep |S| = 1: the perpendicular part of the field
    fd_rot = FiniteDifferenceFields(ExactSolver(model)).__call__(S)
    assert (perpendicular(S, out.fields) - fd_rot.fields).abs().max() < TOL_FD
    # Cartesian displacements: the full gradient in R^3 (the Hamiltonian is linear in S)
    fd_cart = FiniteDifferenceFields(ExactSolver(model, check_norm=False), mode="cartesian")(S)
    assert (out.fields - fd_cart.fields).abs().max() < TOL_FD


@pytest.mark.parametrize("kind", ["square", "triangular"])
def test_global_rotation(kind):
    lat = getattr(lattice, kind)(4)
    ed = ExactSolver(SDModel(lat, J=3.0, filling=0.4, kT=0.1))
    S = random_spins(lat.n_sites, seed=3)
    R = random_rotation(5)
    a, b = ed(S), ed(S @ R.T)
    assert torch.allclose(a.energy, b.energy, atol=1e-11, rtol=0)
    assert torch.allclose(a.fields @ R.T, b.fields, atol=1e-11, rtol=0)


def test_batch_equals_single_and_particle_number():
    lat = lattice.triangular(4)
    for ens in ENSEMBLES:
        model = SDModel(lat, J=2.0, **ens)
        ed = ExactSolver(model)
        S = random_spins(lat.n_sites, seed=7, batch=(3,))
        out = ed(S)
        for b in range(3):
            single = ed(S[b])
            assert torch.allclose(out.energy[b], single.energy, atol=1e-11)
            assert torch.allclose(out.fields[b], single.fields, atol=1e-11)
        if model.canonical:
            assert torch.allclose(ed.densities(S).sum(-1), torch.full((3,), float(model.n_electrons), dtype=torch.float64))


def test_fixed_filling_equals_fixed_mu_at_solved_mu():
    """At kT > 0, F(N) = Ω(μ*) + μ* N and the fields agree (a Legendre transform)."""
    lat = lattice.square(4)
    S = random_spins(lat.n_sites, seed=2)
    can = ExactSolver(SDModel(lat, J=4.0, filling=0.45, kT=0.2))
    mu = can.chemical_potential(S).item()
    grand = ExactSolver(SDModel(lat, J=4.0, mu=mu, kT=0.2))
    a, b = can(S), grand(S)
    assert torch.allclose(a.fields, b.fields, atol=1e-10)
    assert abs(a.energy.item() - (b.energy.item() + mu * can.model.n_electrons)) < 1e-9


def test_low_temperature_limit():
    """Free energy and fields at small kT approach the kT = 0 ones for a gapped state."""
    lat = lattice.square(4)
    S = random_spins(lat.n_sites, seed=9)
    e0 = ExactSolver(SDModel(lat, J=6.0, filling=0.5))(S)
    e1 = ExactSolver(SDModel(lat, J=6.0, filling=0.5, kT=1e-3))(S)
    assert abs(e0.energy - e1.energy) < 1e-6
    assert (e0.fields - e1.fields).abs().max() < 1e-6


def test_dos_is_normalised():
    lat = lattice.square(4)
    ed = ExactSolver(SDModel(lat, J=2.0, mu=0.0))
    w = torch.linspace(-10, 10, 4001, dtype=torch.float64)
    d = ed.dos(random_spins(lat.n_sites, seed=1), w, broadening=0.1)
    assert abs(torch.trapezoid(d, w).item() - 1.0) < 1e-6
    with pytest.raises(ValueError, match="broadening"):
        ed.dos(random_spins(lat.n_sites, seed=1), w, broadening=0.0)


@pytest.mark.parametrize("name", ["quench_c14500.dat", "quench_c40000.dat"])
def test_external_reference_snapshots(name):
    """Fields of the square-lattice study's own solver (single precision, see tests/data README)."""
    d = torch.from_numpy(np.loadtxt(DATA / name))
    lat = lattice.square(30)
    assert torch.equal(d[:, 0] + 30 * d[:, 1], torch.arange(900, dtype=torch.float64))
    S = d[:, 3:6] / d[:, 3:6].norm(dim=-1, keepdim=True)
    ed = ExactSolver(SDModel(lat, t=1.0, J=6.0, filling=873 / 1800))
    eps, vecs = ed.eigh(S)
    f, _, energy = ed.occupations(eps)
    m, n = ed.moments(ed.local_blocks(vecs, f))
    assert (6.0 * m - d[:, 6:9]).abs().max() < 1e-3
    assert (n / 2 - d[:, 2]).abs().max() < 1e-4
    if name == "quench_c40000.dat":
        assert abs(energy.item() / 900 - (-6.1710)) < 1e-4  # value stated with the data
