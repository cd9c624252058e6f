"""The public API on every available device gives what it gives on the CPU, on that device.

The ``device`` fixture runs each test on the CPU and, where a CUDA device is present, on it (marked
``gpu``: skipped cleanly without one). A test computes on the CPU, repeats with its inputs moved to
the device, and checks that every output tensor is on the device and equals the CPU one to ``TOL``
(float64; GPU kernels sum in another order). On a CPU-only machine the CPU runs still check the
code paths, and ``test_new_tensors_name_their_device`` reads the source of the device-agnostic
modules for tensors made from nothing without a device (the usual cause of "Expected all tensors to
be on the same device").
"""
import ast
import copy
import inspect

import numpy as np
import pytest
import torch

from sdlib import LLG, ExactSolver, KPMSolver, MLForceField, SDModel, analysis, dynamics, lattice, random_spins
from sdlib.descriptors import Descriptor
from sdlib.forcefield import ForceFieldOutput
from sdlib.locality import cutoff_sensitivity, swap_sensitivity, torque_response
from sdlib.warmstart import match_features

TOL = dict(rtol=1e-9, atol=1e-10)
PHYS = {"t": 1.0, "J": 2.0, "filling": 0.25, "kT": 0.0}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    return torch.device(request.param)


def same(cpu, dev, device):
    """``dev`` equals ``cpu`` to TOL, every tensor of it on ``device`` (tensors, numbers, tuples of them)."""
    if isinstance(cpu, (tuple, list)):
        assert len(cpu) == len(dev)
        for a, b in zip(cpu, dev):
            same(a, b, device)
    elif isinstance(cpu, torch.Tensor):
        assert dev.device.type == device.type, f"a result is on {dev.device}, its input on {device}"
        torch.testing.assert_close(dev.cpu(), cpu, **TOL)
    elif isinstance(cpu, np.ndarray):
        np.testing.assert_array_equal(dev, cpu)
    else:
        assert dev == pytest.approx(cpu, rel=TOL["rtol"], abs=TOL["atol"])


class Heisenberg:
    """E = -Σ_<ij> S_i·S_j: fields H_i = Σ_nn S_j, on the spins' device."""

    def __init__(self, lat):
        self.lat = lat

    def __call__(self, spins):
        h = spins[..., self.lat.table("neighbors", spins.device), :].sum(-2)
        return ForceFieldOutput(-(spins * h).sum((-1, -2)) / 2, h)


def test_lattice_tables_distances_and_random_spins(device):
    lat = lattice.triangular(6)
    assert lat.table("triangles", device) is lat.table("triangles", device), "one copy per device"
    same(lat.triangles, lat.table("triangles", device), device)
    same(lat.distances([0, 7, 20]), lat.distances(torch.tensor([0, 7, 20], device=device)), device)
    x, y = torch.tensor([1, 7, -2]), torch.tensor([2, -1, 5])
    same(lat.index(x, y), lat.index(x.to(device), y.to(device)), device)
    same(random_spins(36, 2, seed=3), random_spins(36, 2, seed=3, device=device), device)


def test_analysis_of_triangle_fields(device):
    lat = lattice.triangular(12)

    def run(spins):
        chi = analysis.chirality(spins, lat)
        Sq = analysis.structure_factor(chi, lat)
        return (chi, Sq, analysis.correlation_function(chi, lat), analysis.correlation_length(chi, lat),
                analysis.wall_length(chi, lat), analysis.domain_length(Sq, lat), analysis.radial_average(Sq, lat),
                analysis.wall_anisotropy(Sq, lat, 0.5, 2.5), analysis.mean_and_error(chi, dim=0),
                analysis.q_norms(lat, spins.device), analysis.triangle_pairs(lat, spins.device))

    spins = random_spins(lat.n_sites, 2, seed=1)
    same(run(spins), run(spins.to(device)), device)


def test_analysis_of_site_fields_clusters_and_fits(device):
    lat = lattice.square(12)

    def run(spins):
        phi = analysis.bond_field(spins, lat)
        Sq = analysis.structure_factor(phi, lat)
        return (phi, analysis.nn_correlation(spins, lat), analysis.magnetization(spins), Sq,
                analysis.correlation_length(phi, lat), analysis.domain_length(Sq, lat),
                analysis.radial_average(Sq, lat), analysis.fm_clusters(spins[0], lat, 0.3))

    spins = random_spins(lat.n_sites, 2, seed=2)
    same(run(spins), run(spins.to(device)), device)
    labels = analysis.fm_clusters(spins.to(device)[1], lat)
    assert analysis.cluster_length(labels) == analysis.cluster_length(analysis.fm_clusters(spins[1], lat))
    t = torch.linspace(1, 10, 12, dtype=torch.float64)
    L = 2 * t**0.4 * (1 + 0.01 * torch.cos(t))
    assert analysis.growth_exponent(t.to(device), L.to(device)) == analysis.growth_exponent(t.numpy(), L.numpy())


@pytest.mark.parametrize("ensemble", [dict(filling=0.4), dict(mu=-0.5, kT=0.1)])
def test_model_and_exact_solver(device, ensemble):
    model = SDModel(lattice.square(4), J=3.0, **ensemble)
    ed = ExactSolver(model)

    def run(spins):
        out, grand = ed(spins), ed.grand(spins, -0.5)
        labels = ed.grand_labels(spins, [-1.0, 0.0], kT=0.1)
        w = torch.linspace(-5, 5, 11, dtype=torch.float64, device=spins.device)
        return (model.hamiltonian(spins), out.energy, out.fields, grand.energy, grand.fields, grand.number,
                ed.chemical_potential(spins), ed.densities(spins), ed.dos(spins, w),
                labels["energy"], labels["fields"], labels["number"])

    spins = random_spins(model.n_sites, 2, seed=3)
    same(run(spins), run(spins.to(device)), device)


@pytest.mark.parametrize("ensemble", [dict(filling=0.4), dict(mu=-0.5)])
def test_kpm_solver(device, ensemble):
    kpm = KPMSolver(SDModel(lattice.square(6), J=3.0, kT=0.2, **ensemble), n_moments=60)

    def run(spins):
        out = kpm(spins)
        return out.energy, out.fields

    spins = random_spins(36, 2, seed=4)
    same(run(spins), run(spins.to(device)), device)


def test_descriptor_network_and_warm_start(device):
    lat = lattice.square(6)
    torch.manual_seed(0)
    ff = MLForceField(Descriptor(lat), hidden=(8,), physics=PHYS | {"L": 6})
    grand = MLForceField(Descriptor(lat), hidden=(8,), physics=PHYS | {"L": 6, "mu_range": [-2.0, 0.0]},
                         mu_input=True)
    bigger = Descriptor(lat, cutoff=2.9)
    on_device = [copy.deepcopy(m).to(device) for m in (ff, grand, bigger)]

    def run(spins, ff, grand, bigger):
        out, at_mu = ff(spins), grand.grand(spins, -1.0)
        return (ff.descriptor(spins), out.energy, out.fields, at_mu.energy, at_mu.fields, at_mu.number, at_mu.mu,
                match_features(ff.descriptor, bigger))

    spins = random_spins(36, 2, seed=5)
    cpu, dev = run(spins, ff, grand, bigger), run(spins.to(device), *on_device)
    same(cpu[:-1], dev[:-1], device)
    assert torch.equal(cpu[-1], dev[-1]), "the same feature map from descriptors on any device"
    if device.type != "cpu":
        with pytest.raises(ValueError, match="descriptor.to"):
            ff.descriptor(spins.to(device))


@pytest.mark.parametrize("method", ["midpoint", "heun"])
def test_llg_runs_and_resumes(device, method, tmp_path):
    lat = lattice.square(6)
    spins = random_spins(36, 2, seed=6)

    def run(s):
        return LLG(Heisenberg(lat), dt=0.05, alpha=0.3, method=method).run(s, 20)

    same(run(spins), run(spins.to(device)), device)
    hot = dict(dt=0.05, alpha=0.3, kT=0.1, seed=1, method=method)
    whole = LLG(Heisenberg(lat), **hot).run(spins.to(device), 20)
    LLG(Heisenberg(lat), **hot).run(spins.to(device), 10, checkpoint=tmp_path / "c.pt", checkpoint_every=5)
    resumed = LLG(Heisenberg(lat), **hot).run(spins.to(device), 20, checkpoint=tmp_path / "c.pt")
    assert resumed.device.type == device.type and torch.equal(resumed, whole)
    torch.testing.assert_close(whole.norm(dim=-1), torch.ones(2, 36, dtype=torch.float64, device=device))


def test_locality_measures(device):
    lat = lattice.triangular(6)
    ff = Heisenberg(lat)

    def run(spins, other):
        return (torque_response(ff, spins, lat, [0, 7]), cutoff_sensitivity(ff, spins, lat, [0, 7], [0.5, 1.5]),
                swap_sensitivity(ff, spins, lat, [0, 7], [0.5, 1.5], other))

    spins, other = random_spins(36, seed=7), random_spins(36, 2, seed=8)
    same(run(spins, other), run(spins.to(device), other.to(device)), device)


def test_plots_take_tensors_on_any_device(device):
    plt = pytest.importorskip("matplotlib.pyplot")
    from sdlib import plotting

    lat = lattice.triangular(6)
    spins = random_spins(36, seed=9, device=device)
    plotting.plot_spins(lat, spins)
    plotting.plot_triangle_field(lat, analysis.chirality(spins, lat))
    plotting.plot_site_field(lat, analysis.bond_field(spins, lat))
    w = torch.linspace(-5, 5, 11, dtype=torch.float64, device=device)
    plotting.plot_dos(w, {"random": ExactSolver(SDModel(lat, J=2.0, mu=0.0)).dos(spins, w)})
    plt.close("all")


@pytest.mark.parametrize("kind", ["square", "triangular"])
def test_shape_static_api_on_the_meta_device(kind):
    """Tensors on the ``meta`` device have shapes but no data, and torch refuses to mix them with CPU
    tensors as it refuses CUDA ones: the functions whose output shapes do not depend on the data run
    here on every machine (the others need ``.item()``, ``unique`` or masks, which meta cannot do)."""
    meta = torch.device("meta")
    lat = getattr(lattice, kind)(12)
    spins = random_spins(lat.n_sites, 2, seed=10, device=meta)
    phi = analysis.bond_field(spins, lat)
    Sq = analysis.structure_factor(phi, lat)
    out = [phi, analysis.nn_correlation(spins, lat), analysis.magnetization(spins), Sq,
           analysis.domain_length(Sq, lat), analysis.mean_and_error(phi, dim=0)[1], analysis.q_norms(lat, meta)]
    if kind == "triangular":
        chi = analysis.chirality(spins, lat)
        Sq = analysis.structure_factor(chi, lat)
        out += [chi, Sq, analysis.domain_length(Sq, lat), analysis.wall_length(chi, lat),
                analysis.triangle_pairs(lat, meta)]
    grad = spins.clone().requires_grad_(True)
    out += [Descriptor(lat).to(meta)(spins), torch.autograd.grad(Descriptor(lat).to(meta)(grad).sum(), grad)[0]]
    assert [t.device.type for t in out] == ["meta"] * len(out)


FACTORIES = {"zeros", "ones", "full", "empty", "arange", "tensor", "eye", "linspace", "randn", "rand", "randint"}


def unplaced_tensors(module) -> list[str]:
    """Lines of ``module`` that make a tensor from nothing without ``device=``, or take a NumPy array
    with ``torch.from_numpy`` (always on the CPU) in a statement that never moves it ``.to(...)``."""
    source = inspect.getsource(module)
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    bad = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
            continue
        statement = node
        while not isinstance(statement, ast.stmt):
            statement = parents[statement]
        text = ast.get_source_segment(source, statement)
        if node.func.attr in FACTORIES and not any(k.arg == "device" for k in node.keywords):
            bad.append(f"{module.__name__}:{node.lineno}: {text}")
        elif node.func.attr == "from_numpy" and ".to(" not in text:
            bad.append(f"{module.__name__}:{node.lineno}: {text}")
    return bad


@pytest.mark.parametrize("module", [analysis, dynamics], ids=lambda m: m.__name__)
def test_new_tensors_name_their_device(module):
    assert unplaced_tensors(module) == []
