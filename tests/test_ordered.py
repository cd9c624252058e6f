"""Ordered states: Bloch levels vs real-space diagonalisation, reference energies, stationarity."""
import math

import numpy as np
import pytest
import torch

from sdlib import ExactSolver, SDModel, analysis, lattice
from sdlib.electrons import ordered

TOL_REF = 1e-4  # the reference table of PHYSICS.md is given to 4-5 decimals
ALL = [(kind, name) for kind, names in ordered.STATES.items() for name in names]


@pytest.mark.parametrize("kind, name", ALL)
def test_bloch_levels_equal_real_space_levels(kind, name):
    lat = getattr(lattice, kind)(6)
    model = SDModel(lat, J=2.3, mu=0.0)
    real = torch.linalg.eigvalsh(model.hamiltonian(ordered.spins(name, lat)))
    bloch = ordered.levels(name, kind, J=2.3, size=6)
    assert torch.allclose(real, bloch, atol=1e-10)


@pytest.mark.parametrize("kind, name", ALL)
@pytest.mark.parametrize("ens", [dict(mu=-0.8), dict(filling=0.3), dict(filling=0.3, kT=0.2), dict(mu=-0.8, kT=0.2)])
def test_energies_equal_exact_diagonalisation(kind, name, ens):
    lat = getattr(lattice, kind)(6)
    out = ExactSolver(SDModel(lat, J=2.3, **ens))(ordered.spins(name, lat))
    per_site = ordered.energy(name, kind, J=2.3, size=6, **ens)
    assert abs(out.energy.item() / lat.n_sites - per_site) < 1e-10


REFERENCE = [
    ("square", 6.0, 0.485, {"FM": -5.93443, "Neel": -6.13517}),
    ("square", 6.0, 0.5, {"FM": -6.0, "Neel": -6.31517}),
    ("triangular", 2.0, 0.25, {"FM": -2.1301, "120": -2.1880, "stripe": -2.2308, "tetrahedral": -2.2516}),
]


@pytest.mark.parametrize("kind, J, f, expected", REFERENCE)
def test_reference_energies(kind, J, f, expected):
    e = ordered.compare(kind, J, filling=f, size=192)
    for name, value in expected.items():
        assert abs(e[name] - value) < TOL_REF, (name, e[name], value)
    assert ordered.ground_state(kind, J, filling=f, size=96) == min(expected, key=expected.get)


def test_reference_physics_of_the_triangular_study():
    """Grand canonical, μ in the middle of the tetrahedral gap at f = 1/4, T_e = 0.1, J = 2: Ω/N of
    the ordered states (the reference table), tetrahedral lowest."""
    expected = {"tetrahedral": -1.0419, "stripe": -1.0279, "120": -1.0045, "FM": -0.9369}
    omega = ordered.compare("triangular", 2.0, mu=-2.4194, kT=0.1, size=96)
    for name, value in expected.items():
        assert abs(omega[name] - value) < 1e-3, (name, omega[name], value)
    assert ordered.ground_state("triangular", 2.0, mu=-2.4194, kT=0.1, size=96) == "tetrahedral"


@pytest.mark.parametrize(
    "kind, name, J, filling",
    [("square", "FM", 6.0, 0.485), ("square", "Neel", 6.0, 0.5), ("triangular", "FM", 2.0, 0.25),
     ("triangular", "tetrahedral", 2.0, 0.25)],
)
def test_stationary_states_have_zero_torque(kind, name, J, filling):
    lat = getattr(lattice, kind)(8)
    S = ordered.spins(name, lat)
    out = ExactSolver(SDModel(lat, J=J, filling=filling))(S)
    assert torch.linalg.cross(S, out.fields, dim=-1).abs().max() < 1e-10


def test_tetrahedral_geometry():
    lat = lattice.triangular(8)
    S = ordered.spins("tetrahedral", lat)
    chi = analysis.chirality(S, lat)
    assert torch.allclose(chi.abs(), torch.full_like(chi, 4 / (3 * math.sqrt(3))), atol=1e-14)
    b = lat.bonds
    assert torch.allclose((S[b[:, 0]] * S[b[:, 1]]).sum(-1), torch.full((len(b),), -1 / 3, dtype=torch.float64))
    # the 120° state: every triangle has three spins at 120°
    S3 = ordered.spins("120", lattice.triangular(6))
    b6 = lattice.triangular(6).bonds
    assert torch.allclose((S3[b6[:, 0]] * S3[b6[:, 1]]).sum(-1), torch.full((len(b6),), -0.5, dtype=torch.float64))


def test_phase_diagram_agrees_with_pointwise_energies():
    Js, mus = [1.0, 4.0], np.linspace(-5.0, 0.0, 7)
    names, winner, omega = ordered.phase_diagram("triangular", Js, mus, size=12)
    assert winner.shape == (2, 7) and omega.shape == (len(names), 2, 7)
    for b, J in enumerate(Js):
        for c, mu in enumerate(mus):
            e = ordered.compare("triangular", J, mu=float(mu), size=12)
            assert names[winner[b, c]] == min(e, key=e.get)
            assert omega[names.index("FM"), b, c].item() == pytest.approx(e["FM"], abs=1e-12)


def test_dos_normalised():
    w = np.linspace(-12, 12, 4001)
    d = ordered.dos("Neel", "square", 6.0, w, broadening=0.1, size=24)
    assert abs(np.trapezoid(d.numpy(), w) - 1) < 1e-6


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ordered.energy("spiral", "square", 1.0, mu=0.0), "name"),
        (lambda: ordered.energy("tetrahedral", "square", 1.0, mu=0.0), "name"),
        (lambda: ordered.energy("FM", "kagome", 1.0, mu=0.0), "kind"),
        (lambda: ordered.energy("FM", "square", 1.0), "mu"),
        (lambda: ordered.energy("FM", "square", 1.0, mu=0.0, filling=0.5), "mu"),
        (lambda: ordered.energy("FM", "square", 1.0, filling=1.2), "filling"),
        (lambda: ordered.energy("FM", "square", 1.0, mu=0.0, size=0), "size"),
        (lambda: ordered.spins("120", lattice.triangular(4)), "L"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
