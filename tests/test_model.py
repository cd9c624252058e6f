"""The single-particle Hamiltonian against band theory, and the model's input checks."""
import math

import numpy as np
import pytest
import torch

from sdlib import SDModel, lattice, random_spins


def dispersion(kind, L, t=1.0):
    """Analytic tight-binding levels -t Σ_d e^{ik·d} on the L×L k-mesh (both spin species)."""
    m = 2 * np.pi * np.arange(L) / L
    k1, k2 = np.meshgrid(m, m, indexing="ij")  # k·a1, k·a2
    eps = -2 * t * (np.cos(k1) + np.cos(k2))
    if kind == "triangular":
        eps += -2 * t * np.cos(k2 - k1)
    return np.sort(np.repeat(eps.ravel(), 2))


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("kind", ["square", "triangular"])
@pytest.mark.parametrize("J", [0.0, 2.5])
def test_ferromagnet_levels_equal_band_theory(kind, J):
    lat = getattr(lattice, kind)(6)
    model = SDModel(lat, t=1.0, J=J, mu=0.0)
    n = unit(torch.tensor([0.3, -0.4, 0.8], dtype=torch.float64))
    H = model.hamiltonian(n.expand(lat.n_sites, 3))
    assert torch.allclose(H, H.mH)
    levels = torch.linalg.eigvalsh(H).numpy()
    band = dispersion(kind, 6)[::2]
    expected = np.sort(np.concatenate([band - J, band + J]))  # Zeeman splitting ∓J along n
    assert np.allclose(levels, expected, atol=1e-12)


def test_local_block_is_minus_J_S_dot_sigma():
    lat = lattice.square(3)
    model = SDModel(lat, t=1.0, J=1.7, filling=0.5)
    S = random_spins(lat.n_sites, seed=1)
    H = model.hamiltonian(S)
    pauli = torch.tensor([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=torch.complex128)
    for i in range(lat.n_sites):
        block = H[2 * i:2 * i + 2, 2 * i:2 * i + 2]
        expected = -1.7 * torch.einsum("a,ast->st", S[i].to(torch.complex128), pauli)
        assert torch.allclose(block, expected)


def test_sparse_hopping_equals_dense():
    model = SDModel(lattice.triangular(4), J=1.0, mu=0.0)
    dense = torch.kron(model.hopping, torch.eye(2, dtype=torch.float64)).to(torch.complex128)
    assert torch.equal(model.sparse_hopping().to_dense(), dense)
    lo, hi = model.spectral_bounds()
    S = random_spins(16, seed=2)
    ev = torch.linalg.eigvalsh(model.hamiltonian(S))
    assert lo <= ev.min() and ev.max() <= hi


def test_batched_hamiltonian():
    model = SDModel(lattice.square(3), J=2.0, mu=0.0)
    S = random_spins(9, 4, seed=3)
    H = model.hamiltonian(S)
    assert H.shape == (4, 18, 18)
    assert torch.equal(H[2], model.hamiltonian(S[2]))


def test_electron_count():
    m = SDModel(lattice.square(30), J=6.0, filling=0.485)
    assert m.n_electrons == 873


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(J=1.0), "mu"),
        (dict(J=1.0, mu=0.0, filling=0.5), "mu"),
        (dict(J=1.0, filling=0.0), "filling"),
        (dict(J=1.0, filling=1.0), "filling"),
        (dict(J=1.0, filling=1.5), "filling"),
        (dict(J=1.0, filling=0.001), "filling"),  # rounds to zero electrons on 3x3
        (dict(J=float("nan"), mu=0.0), "J"),
        (dict(J=1.0, mu=0.0, t=0.0), "t"),
        (dict(J=1.0, mu=0.0, kT=-0.1), "kT"),
        (dict(J=1.0, mu="a"), "mu"),
    ],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SDModel(lattice.square(3), **kwargs)


def test_bad_lattice():
    with pytest.raises(ValueError, match="lattice"):
        SDModel("square", J=1.0, mu=0.0)


def test_ed_error_messages_for_bad_spins():
    from sdlib import ExactSolver

    ed = ExactSolver(SDModel(lattice.square(3), J=1.0, mu=0.0))
    good = random_spins(9, seed=4)
    with pytest.raises(ValueError, match=r"spins must have shape \[9, 3\]"):
        ed(good[:8])
    with pytest.raises(ValueError, match="unit vectors"):
        ed(2 * good)
    bad = good.clone()
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        ed(bad)
    with pytest.raises(ValueError, match="floating"):
        ed(torch.ones(9, 3, dtype=torch.long))
