"""The models shipped in ``sdlib/data``: accuracy on fresh reference quenches, exact symmetry, files.

The held-out set is generated here, not read from the training data: exact-diagonalisation LLG
quenches from random spins with seeds that the data recipe (``scripts/make_models.py``) never
uses, on the lattice the model was trained on, sampled at early, middle and late times of the
quench, and the relative torque error ‖T_ML − T_ref‖ / ‖T_ref‖ over all sampled frames is
compared with ``TOL_TORQUE``.

The project's target is ``TARGET_TORQUE`` = 0.05. The shipped models do not reach it (chapter 03,
"The shipped models", gives the measured errors and what limits them); ``TOL_TORQUE`` is the
accuracy they do reach, with a margin for the sampling of the fresh quenches, so that a
retrained model that is worse than the shipped one fails here.
"""
import json
import os

import pytest
import torch

from sdlib import ExactSolver, SDModel, lattice, random_spins
from sdlib.dynamics import LLG, FunctionObserver
from sdlib.nn import MLForceField, _DATA
from tests.scripts import torque_rel

TARGET_TORQUE = 0.05     # the project's accuracy goal (not met yet, see the module docstring)
TOL_TORQUE = {"square-double-exchange": 0.17, "triangular-tetrahedral": 0.48}  # reached, plus margin
TOL_F32 = 2e-3           # float32 inference against float64 fields of the same model, relative
TOL_SYM = 1e-9           # exact symmetries, float64
MAX_BYTES = 10 * 2**20   # each shipped model ≤ 10 MB
NAMES = ["square-double-exchange", "triangular-tetrahedral"]
HELD_OUT_SEEDS = (9001, 9002)
QUENCH = {"square-double-exchange": dict(n_steps=240, every=40, kT=0.005),
          "triangular-tetrahedral": dict(n_steps=400, every=50, kT=0.002)}

pytestmark = pytest.mark.usefixtures("one_thread")


def reference(ff):
    """The s-d model of the physics the force field records, on its training lattice."""
    p = ff.physics
    lat = getattr(lattice, p["lattice"])(p["L"])
    kw = {"mu": p["mu"]} if "mu" in p else {"filling": p["filling"]}
    return lat, SDModel(lat, t=p["t"], J=p["J"], kT=p["kT"], **kw)


@pytest.fixture(scope="module", params=NAMES)
def shipped(request):
    return request.param, MLForceField.pretrained(request.param)


@pytest.fixture(scope="module")
def held_out(shipped):
    """Frames (spins, exact fields) of ED quenches with unseen seeds, a few times along each."""
    name, ff = shipped
    lat, model = reference(ff)
    q = QUENCH[name]
    frames = []
    obs = FunctionObserver(lambda s, out: torch.stack([s, out.fields]), every=q["every"], name="frames")
    llg = LLG(ExactSolver(model), dt=0.05, alpha=0.5, kT=q["kT"], seed=HELD_OUT_SEEDS[0])
    llg.run(random_spins(lat.n_sites, len(HELD_OUT_SEEDS), seed=HELD_OUT_SEEDS[1]), q["n_steps"], observers=[obs])
    for f in obs.values:
        frames += [(f[0, b], f[1, b]) for b in range(f.shape[1])]
    return frames


@pytest.mark.slow
def test_torque_error_on_held_out_quenches(shipped, held_out):
    name, ff = shipped
    spins = torch.stack([s for s, _ in held_out])
    ref = torch.stack([h for _, h in held_out])
    rel = torque_rel(spins, ff(spins).fields, ref)
    assert rel <= TOL_TORQUE[name], f"{name}: relative torque error {rel:.4f} > {TOL_TORQUE[name]} on {len(held_out)} frames"


def test_float32_inference_matches_float64(shipped):
    name, ff = shipped
    s = random_spins(ff.n_sites, 2, seed=7)
    h64 = ff(s).fields
    h32 = MLForceField.pretrained(name, dtype=torch.float32)(s.float()).fields.double()
    rel = ((h32 - h64).norm() / h64.norm()).item()
    assert rel <= TOL_F32, f"{name}: float32 fields differ by {rel:.2e} (relative) from float64"


def test_symmetry_on_a_larger_lattice(shipped):
    """Rotated spins give rotated fields; a lattice translation permutes the fields."""
    name, ff0 = shipped
    lat = getattr(lattice, ff0.physics["lattice"])(ff0.physics["L"] + 4)
    ff = MLForceField.pretrained(name, lattice=lat)
    s = random_spins(lat.n_sites, seed=3)
    R = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64))[0]
    h, h_rot = ff(s).fields, ff(s @ R.T).fields
    assert torch.allclose(h_rot, h @ R.T, atol=TOL_SYM)
    perm = lat.shifted(1, 2)
    assert torch.allclose(ff(s[perm]).fields, h[perm], atol=TOL_SYM)


def test_files_config_and_provenance(shipped):
    name, ff = shipped
    for ext in (".safetensors", ".json"):
        assert os.path.getsize(_DATA / f"{name}{ext}") <= MAX_BYTES
    cfg = json.loads((_DATA / f"{name}.json").read_text())
    assert cfg["physics"] == ff.physics and cfg["sdlib_version"]
    prov = cfg["provenance"]
    for key in ("data", "epochs_run", "errors", "wall_s_training", "hardware", "date"):
        assert key in prov, f"{name}: provenance lacks {key!r}"
    assert prov["errors"]["held_out_quenches"]["torque_rel"] <= TOL_TORQUE[name]


TOL_ORDERED = 0.01       # t per site: ordered-state energies of the square model against ED


def test_square_model_conserves_electrons_and_orders_the_uniform_states_as_ed():
    """The shipped square model takes μ as input: at fixed filling its N(μ*) is N_e, and the free
    energies of the FM and Néel states (whose energy difference drives the phase separation of
    chapter 05) agree with exact diagonalisation at the model's electron temperature."""
    ff = MLForceField.pretrained("square-double-exchange")
    lat, model = reference(ff)
    assert ff.mu_input and model.n_electrons == ff.n_electrons
    fm = torch.zeros(lat.n_sites, 3, dtype=torch.float64)
    fm[:, 2] = 1.0
    neel = fm * torch.where((lat.coords.sum(1) % 2) == 0, 1.0, -1.0).to(torch.float64)[:, None]
    states = torch.stack([fm, neel, random_spins(lat.n_sites, seed=11)])
    e_ml, e_ed = ff(states).energy / lat.n_sites, ExactSolver(model)(states).energy / lat.n_sites
    assert (e_ml - e_ed).abs().max() <= TOL_ORDERED, (e_ml.tolist(), e_ed.tolist())
    n = ff.grand(states, ff.solve_mu(states)).number
    assert torch.allclose(n, torch.full_like(n, float(ff.n_electrons)), atol=1e-6)


# The triangular network of the study's own physics (T_e = 0.1, grand canonical at μ = −2.4194, J = 2),
# committed with its provenance in book/runs/04-cpu-candidate (chapter 04 reads it): r5z, the best so
# far. Issue 21's target for a network bounded by its cutoff is the locality floor + 0.02: at R = 5
# the exact torques change by 0.21–0.23 of their rms when the spins beyond R are swapped (chapter
# 03, frames of t <= 100), so 0.25, which the network meets here (0.244: 0.237, 0.253, 0.257 at t =
# 12.5, 50, 100; r5x before it 0.250) and misses by 0.003 on the exact quench's own frames (0.254,
# scores.json). TOL_STUDY is that accuracy plus a margin for the float32 trajectory on another
# machine: a worse network fails. The late frame (t = 200: domains, torques three times smaller) is
# held apart: there the part of the torque decided beyond R = 5 is as large as early on in absolute
# terms, so s(5) rises to 0.6 (chapter 03, "along the quench"); TOL_STUDY_LATE is again what the
# network reaches (0.312) plus a margin.
STUDY_NETWORK = "book/runs/04-cpu-candidate/r5z"
STUDY_FLOOR_TARGET = 0.25
TOL_STUDY, TOL_STUDY_LATE = 0.27, 0.36
STUDY_L, STUDY_FRAME_T, STUDY_LATE_T, STUDY_SEED = 36, (12.5, 50.0, 100.0), 200.0, 9101


@pytest.mark.slow
def test_study_network_on_fresh_exact_36x36_frames():
    """Frames of a fresh 36 × 36 quench driven by the network itself (a seed no data set uses; Δt =
    0.25, α = 0.5, no bath, as chapter 04's quenches), early, middle and late, labelled here by exact
    diagonalisation in the study's ensemble; the relative torque error over those three, and on a frame
    of the late, quiet coarsening on its own."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    lat = lattice.triangular(STUDY_L)
    ff = MLForceField.load(os.path.join(root, STUDY_NETWORK), lattice=lat)
    p = ff.physics
    assert (p["lattice"], p["J"], p["kT"]) == ("triangular", 2.0, 0.1) and abs(p["mu"] + 2.4194) < 1e-9
    model = SDModel(lat, t=p["t"], J=p["J"], mu=p["mu"], kT=p["kT"])
    drive = MLForceField.load(os.path.join(root, STUDY_NETWORK), lattice=lat, dtype=torch.float32)
    llg = LLG(drive, dt=0.25, alpha=0.5, kT=0.0, seed=STUDY_SEED)
    s, frames = random_spins(lat.n_sites, seed=STUDY_SEED).float(), []
    for t in STUDY_FRAME_T + (STUDY_LATE_T,):
        s = llg.run(s, int(round(t / 0.25)))  # to that step
        frames.append(torch.nn.functional.normalize(s.double(), dim=-1))  # float32 unit length to 1e-6
    spins = torch.stack(frames)
    ref = torch.stack([ExactSolver(model)(x).fields for x in spins])
    net = ff(spins).fields
    per_frame = [round(torque_rel(*x), 3) for x in zip(spins, net, ref)]
    rel = torque_rel(spins[:-1], net[:-1], ref[:-1])
    assert rel <= TOL_STUDY, (f"{STUDY_NETWORK}: relative torque error {rel:.4f} > {TOL_STUDY} at t = {STUDY_FRAME_T} "
                              f"(frames: {per_frame}; the target, the locality floor + 0.02, is {STUDY_FLOOR_TARGET})")
    late = torque_rel(spins[-1:], net[-1:], ref[-1:])
    assert late <= TOL_STUDY_LATE, (f"{STUDY_NETWORK}: relative torque error {late:.4f} > {TOL_STUDY_LATE} at "
                                    f"t = {STUDY_LATE_T} (frames: {per_frame})")
    print(f"{STUDY_NETWORK}: {rel:.4f} at t = {STUDY_FRAME_T}, {late:.4f} at t = {STUDY_LATE_T} (frames: {per_frame})")
