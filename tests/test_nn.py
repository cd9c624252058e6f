"""Tests of the Behler–Parrinello force field: derivatives, symmetry, dtype, persistence, bad input."""
import copy
import hashlib
import json
import pickle

import pytest
import torch
from torch import nn

from sdlib import lattice, random_spins
from sdlib.descriptors import Descriptor
from sdlib.forcefield import FiniteDifferenceFields
from sdlib.nn import MLForceField, register_descriptor

TOL_FD = 1e-6       # finite differences (h = 1e-5, central) against autograd, float64
TOL_SYM = 1e-10     # exact symmetries in float64
TOL_F32 = 1e-4      # float32 against float64 fields of the same model, relative
PHYS = {"t": 1.0, "J": 2.0, "filling": 0.25, "kT": 0.0}


pytestmark = pytest.mark.usefixtures("one_thread")


@register_descriptor
class ShellBondDescriptor(nn.Module):
    """Per-site bond sums Σ_{j in shell m} S_i·S_j over the neighbour shells within ``cutoff``.

    Invariant under global spin rotations and the site point group by construction; used so that
    tests of the network do not depend on the internals of ``sdlib.descriptors``.
    """

    def __init__(self, lat, cutoff=1.9, dtype=torch.float64):
        super().__init__()
        self.kind, self.n_sites, self.cutoff = lat.kind, lat.n_sites, cutoff
        off = lat.offsets_within(cutoff).double() @ torch.from_numpy(lat.basis)
        r = off.norm(dim=1).round(decimals=6)
        shells = torch.unique(r)
        self.n_features = len(shells)
        self.register_buffer("nbr", lat.neighborhood(cutoff), persistent=False)
        self.register_buffer("shell", (r[:, None] == shells[None]).to(dtype), persistent=False)

    def forward(self, spins):
        dots = (spins[..., :, None, :] * spins[..., self.nbr, :]).sum(-1)
        return dots @ self.shell.to(dots.dtype)

    def spec(self):
        return {"cutoff": self.cutoff, "lattice_kind": self.kind}

    @classmethod
    def from_spec(cls, spec, lat, dtype=torch.float64):
        if spec["lattice_kind"] != lat.kind:
            raise ValueError("wrong lattice kind")
        return cls(lat, spec["cutoff"], dtype)


def make_ff(lat, descriptor="shell", seed=0, **kw):
    torch.manual_seed(seed)
    desc = ShellBondDescriptor(lat) if descriptor == "shell" else Descriptor(lat)
    return MLForceField(desc, hidden=(16, 16), physics=PHYS | {"L": lat.L}, **kw)


@pytest.fixture(params=["square", "triangular"])
def lat(request):
    return getattr(lattice, request.param)(5)


def test_gradcheck_energy_and_fields(lat):
    ff = make_ff(lat, "full")
    s = random_spins(lat.n_sites, seed=1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: ff.site_energies(x).sum(), (s,), fast_mode=True)
    # double backward used in training: gradient of the fields with respect to the spins
    small = make_ff(lattice.square(4), "shell")
    s4 = random_spins(16, seed=2).requires_grad_(True)
    small.check_norm = False
    assert torch.autograd.gradcheck(lambda x: small(x, create_graph=True).fields, (s4,), fast_mode=True)


def test_fields_equal_finite_differences(lat):
    ff = make_ff(lat, "full", check_norm=False)
    s = random_spins(lat.n_sites, seed=3)
    ref = FiniteDifferenceFields(ff, h=1e-5, mode="cartesian", chunk=512)(s)
    out = ff(s)
    assert torch.allclose(out.fields, ref.fields, atol=TOL_FD * out.fields.abs().max())
    assert torch.allclose(out.energy, ref.energy, atol=0, rtol=0)


def _rotation_matrix(seed):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q * torch.sign(torch.linalg.det(q))


def test_global_spin_rotation(lat):
    ff = make_ff(lat, "full")
    s = random_spins(lat.n_sites, seed=4)
    R = _rotation_matrix(5)
    a, b = ff(s), ff(s @ R.T)
    assert torch.allclose(b.energy, a.energy, atol=TOL_SYM * a.energy.abs())
    assert torch.allclose(b.fields, a.fields @ R.T, atol=TOL_SYM * a.fields.abs().max())


def test_point_group_and_translation(lat):
    ff = make_ff(lat, "full")
    s = random_spins(lat.n_sites, seed=6)
    a = ff(s)
    perms = list(lat.point_group_permutations) + [lat.translation(1, 0), lat.translation(2, 3)]
    for perm in perms:
        s2 = torch.empty_like(s)
        s2[perm] = s  # (gS)_{g(i)} = S_i
        b = ff(s2)
        assert torch.allclose(b.energy, a.energy, atol=TOL_SYM * a.energy.abs())
        assert torch.allclose(b.fields[perm], a.fields, atol=TOL_SYM * a.fields.abs().max())


def test_batched_equals_single_and_no_graph(lat):
    ff = make_ff(lat, "full")
    s = random_spins(lat.n_sites, (3,), seed=7)
    out = ff(s)
    assert out.energy.shape == (3,) and out.fields.shape == s.shape
    assert not out.fields.requires_grad and not out.energy.requires_grad
    for k in range(3):
        one = ff(s[k])
        assert torch.allclose(one.fields, out.fields[k], atol=TOL_SYM, rtol=0)
    assert ff(s, create_graph=True).fields.requires_grad


def test_float32_matches_float64():
    lat = lattice.square(6)
    ff = make_ff(lat, "full")
    s = random_spins(lat.n_sites, (2,), seed=8)
    ref = ff(s).fields
    ff32 = copy.deepcopy(ff).to(torch.float32)
    out = ff32(s.float())
    assert out.fields.dtype == torch.float32
    err = (out.fields.double() - ref).norm() / ref.norm()
    assert err < TOL_F32, err


def test_save_load_round_trip_and_other_size(tmp_path):
    lat = lattice.square(6)
    ff = make_ff(lat, "full", provenance={"note": "test"})
    ff.net.fit_normalization(torch.randn(50, ff.net.n_features, dtype=torch.float64), torch.tensor([-1.0]), 2.0)
    wpath, cpath = ff.save(tmp_path / "model")
    g = MLForceField.load(tmp_path / "model")
    s = random_spins(lat.n_sites, seed=9)
    assert torch.equal(g(s).fields, ff(s).fields) and torch.equal(g(s).energy, ff(s).energy)
    assert g.physics == ff.physics | {"lattice": "square"} and g.provenance == {"note": "test"}
    cfg = json.loads(open(cpath).read())
    assert cfg["sdlib_version"] and cfg["descriptor"]["lattice_kind"] == "square"
    digest = hashlib.sha256(open(wpath, "rb").read()).hexdigest()
    assert g.weights_sha256 == ff.weights_sha256 == digest
    # the model is local: a 2×2-periodic texture has the same site energies on any L
    cell = random_spins(4, seed=10).reshape(2, 2, 3)
    energies = []
    for L in (6, 8):
        big = MLForceField.load(wpath, lattice=lattice.square(L))
        c = big.descriptor.n_sites
        x, y = torch.arange(c) % L, torch.arange(c) // L
        energies.append(big(cell[y % 2, x % 2]).energy / c)
    assert torch.allclose(energies[0], energies[1], atol=TOL_SYM)


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _rewrite(cpath, wpath, blob):
    import hashlib

    with open(wpath, "wb") as f:
        f.write(blob)
    cfg = json.loads(open(cpath).read())
    cfg["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    with open(cpath, "w") as f:
        json.dump(cfg, f)


def test_hostile_and_corrupt_files_refused(tmp_path):
    from safetensors.torch import save

    lat = lattice.square(5)
    ff = make_ff(lat)
    wpath, cpath = ff.save(tmp_path / "m")
    good = open(wpath, "rb").read()
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"net": _Marker(str(marker))})
    state = {k: v.clone() for k, v in ff.net.state_dict().items()}
    wrong_shape = save(state | {"mlp.0.weight": torch.zeros(3, 3, dtype=torch.float64)})
    wrong_keys = save(state | {"extra": torch.zeros(2, dtype=torch.float64)})
    missing = save({k: v for k, v in state.items() if k != "mlp.0.bias"})
    for blob in (evil, good[: len(good) // 2], wrong_shape, wrong_keys, missing):
        _rewrite(cpath, wpath, blob)
        with pytest.raises(ValueError):
            MLForceField.load(wpath)
    assert not marker.exists()
    _rewrite(cpath, wpath, good)
    MLForceField.load(wpath)  # restored file loads again
    with open(wpath, "ab") as f:
        f.write(b"\0")  # weights changed after saving: checksum mismatch
    with pytest.raises(ValueError, match="SHA-256"):
        MLForceField.load(wpath)
    with open(cpath, "wb") as f:
        f.write(evil)  # a pickle in place of the JSON config
    with pytest.raises(ValueError):
        MLForceField.load(wpath)
    assert not marker.exists()
    with pytest.raises(ValueError):
        MLForceField.load(tmp_path / "missing")


def test_wrong_lattice_and_bad_arguments(tmp_path):
    lat = lattice.square(5)
    ff = make_ff(lat, "full")
    with pytest.raises(ValueError, match="25 sites"):
        ff(random_spins(36, seed=0))
    with pytest.raises(ValueError, match="unit"):
        ff(2 * random_spins(25, seed=0))
    ff.save(tmp_path / "sq")
    with pytest.raises(ValueError, match="square"):
        MLForceField.load(tmp_path / "sq", lattice=lattice.triangular(5))
    with pytest.raises(ValueError, match="lattice"):
        MLForceField(Descriptor(lat), physics=PHYS | {"lattice": "triangular"})
    with pytest.raises(ValueError, match="mu"):
        MLForceField(Descriptor(lat), physics={"t": 1.0, "J": 2.0, "kT": 0.0})
    with pytest.raises(ValueError, match="hidden"):
        MLForceField(Descriptor(lat), hidden=(), physics=PHYS)
    with pytest.raises(ValueError, match="activation"):
        MLForceField(Descriptor(lat), activation="relu", physics=PHYS)
    with pytest.raises(ValueError, match="name"):
        MLForceField.pretrained("no-such-model", lat)
