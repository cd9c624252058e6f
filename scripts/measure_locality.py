"""How local are the exact torques of the two studies? Swap sensitivity on quench frames (chapter 03).

Usage (from the repository root; one lattice per call, sizes resumable and added to the file)::

    python scripts/measure_locality.py triangular --sizes 12,24 --json book/runs/03-locality/triangular.json
    python scripts/measure_locality.py square --sizes 12,24 --json book/runs/03-locality/square.json
    python scripts/measure_locality.py triangular --sizes 36 --samples 36:2x1 --json book/runs/03-locality/triangular.json

For each lattice size L, ``Q`` quenches from random spins are driven by the shipped network of the
study (LLG with the chapters' dt, α and bath temperature) and frames are kept at three times
(early, middle, late). In each frame ``C`` random sites are centres; the spins farther than R
from a centre are replaced by the same frame of the next quench, and the relative rms change of
the exact torque on the centre is measured (``sdlib.locality.swap_changes``) for every radius
R ≤ L/2 and every electron temperature T_e of ``--kTs`` from one diagonalisation per configuration
(``sdlib.locality.ExactTemperatures``), grand canonical:

* triangular: J = 2, μ = −2.4194 (the middle of the tetrahedral gap at f = 1/4), fixed;
* square: J = 6, μ = the chemical potential of the canonical T_e = 0 solution at f = 0.485 of
  that frame (``ExactSolver(SDModel(..., filling=0.485)).chemical_potential``).

``--samples L:QxC,...`` sets quenches and centres per size (defaults below); samples = 3 Q C.
Each size also reports every frame time on its own (``by_time``: the sensitivity, the rms torque on
the centres and the rms change of the swap per R, absolute, in units of t): as domains form and the
torques fall, how much of them is decided far away.

``--surroundings`` (square lattice) chooses the centres by what surrounds them instead of at
random: in each frame C sites with at least three of their four bonds ferromagnetic (S_i·S_j > 0:
inside the hole-rich FM clusters) and C sites with none (the Néel background), and reports the
sensitivity of each class (``by_surroundings``): how local the torques are where the holes are.
Use another ``--json`` for it (and ``--times`` to drop the early frame, where there are no clusters
yet), e.g.::

    python scripts/measure_locality.py square --surroundings --sizes 24 --samples 24:4x4 --kTs 0.05 \
        --times 8,30 --json book/runs/03-locality/square-surroundings.json
Progress (frames, μ, every finished frame) is kept in ``--work`` (default ``data/locality``), so a
killed run resumes; ``--json`` is rewritten atomically after every frame with the per-sample
squared changes, the sensitivity and its jackknife error, the sample counts and the provenance.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sdlib import LLG, ExactSolver, MLForceField, SDModel, lattice, random_spins  # noqa: E402
from sdlib.dynamics import FunctionObserver  # noqa: E402
from sdlib.analysis import fm_bond_fraction, fm_sites  # noqa: E402
from sdlib.io import atomic_write  # noqa: E402
from sdlib.locality import ExactTemperatures, relative_rms, swap_changes  # noqa: E402
from sdlib.provenance import provenance, write_json  # noqa: E402

STUDIES = {
    "triangular": dict(network="triangular-tetrahedral", J=2.0, mu=-2.4194, filling=None,
                       quench=dict(dt=0.25, alpha=0.5, kT=0.0), times=[5.0, 25.0, 100.0],
                       radii=[2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 9.0, 10.0]),
    "square": dict(network="square-double-exchange", J=6.0, mu=None, filling=0.485,
                   quench=dict(dt=0.05, alpha=0.5, kT=0.01), times=[2.0, 8.0, 30.0],
                   radii=[2.0, 3.0, 3.5, 4.6, 5.1, 6.0, 8.0]),  # 5.1: the authors' sqrt(26)
}
SAMPLES = {12: (4, 3), 24: (3, 2), 36: (2, 1)}  # L: (quenches, centres per frame)
SURROUNDINGS = ("ferromagnetic", "antiferromagnetic")  # >= 3/4 of a centre's bonds FM, or none


def surrounding_centres(spins: torch.Tensor, lat, n_centres: int, generator) -> list[list[int]]:
    """``[FM centres, AFM centres]``: up to ``n_centres`` random sites inside FM clusters
    (``analysis.fm_sites``: at least 3/4 of their nearest-neighbour bonds with S_i·S_j > 0), and up to
    ``n_centres`` with no FM bond."""
    picks = []
    for chosen in (fm_sites(spins, lat), fm_bond_fraction(spins, lat) == 0):
        idx = torch.nonzero(chosen).reshape(-1)
        picks.append(idx[torch.randperm(len(idx), generator=generator)[:n_centres]].tolist())
    return picks


def quench_frames(study: dict, lat, n_quench: int, seed: int, checkpoint: Path) -> torch.Tensor:
    """Spins ``[Q, T, N, 3]`` of ``n_quench`` network-driven quenches at the study's ``times``."""
    q = study["quench"]
    steps = [int(round(t / q["dt"])) for t in study["times"]]
    every = math.gcd(*steps)
    obs = FunctionObserver(lambda s, o: s.clone(), every=every, name="spins")
    ff = MLForceField.pretrained(study["network"], lattice=lat)
    llg = LLG(ff, dt=q["dt"], alpha=q["alpha"], kT=q["kT"], seed=seed)
    llg.run(random_spins(lat.n_sites, (n_quench,), seed=seed), steps[-1], observers=[obs], checkpoint=checkpoint,
            checkpoint_every=max(1, steps[-1] // 10))
    kept = [obs.steps.index(s) for s in steps]
    return obs.stacked()[kept].transpose(0, 1).contiguous()


def measure_size(name: str, L: int, n_quench: int, n_centres: int, kTs, seed: int, work: Path, on_frame,
                 surroundings: bool = False, times=None) -> dict:
    """Every frame of size L (resuming from ``work``); ``on_frame(result)`` after each one.
    ``surroundings``: centres by ``surrounding_centres``; ``times``: the study's frame times by default."""
    study = dict(STUDIES[name])
    if times is not None:
        study["times"] = list(times)
    lat = getattr(lattice, name)(L)
    radii = [R for R in study["radii"] if R <= L / 2]
    tag = (f"{name}-L{L}-Q{n_quench}-C{n_centres}-s{seed}" + ("-surroundings" if surroundings else "")
           + ("" if times is None else "-t" + "_".join(f"{t:g}" for t in times)))
    state_path = work / f"{tag}-R{'_'.join(f'{R:g}' for R in radii)}-T{'_'.join(f'{kT:g}' for kT in kTs)}.pt"
    state = torch.load(state_path, weights_only=True) if state_path.exists() else {"done": {}, "seconds": 0.0}
    t_start = time.time() - state["seconds"]
    if "frames" not in state:
        state["frames"] = quench_frames(study, lat, n_quench, seed, work / f"{tag}.ckpt")
        if study["filling"] is not None:  # μ of the canonical T_e = 0 solution of each frame
            canonical = ExactSolver(SDModel(lat, t=1.0, J=study["J"], filling=study["filling"]))
            state["mu"] = torch.stack([canonical.chemical_potential(f) for f in state["frames"]])
        else:
            state["mu"] = torch.full(state["frames"].shape[:2], study["mu"], dtype=torch.float64)
    frames, mus = state["frames"], state["mu"]
    g = torch.Generator().manual_seed(seed)
    centres = torch.stack([torch.randperm(lat.n_sites, generator=g)[:n_centres] for _ in range(frames.shape[:2].numel())])
    solver = ExactSolver(SDModel(lat, t=1.0, J=study["J"], mu=0.0))
    chunk = 1 if L >= 30 else 8
    for q in range(n_quench):
        for k in range(len(study["times"])):
            key = f"{q}-{k}"
            if key not in state["done"]:
                ff = ExactTemperatures(solver, float(mus[q, k]), kTs)
                other = frames[(q + 1) % n_quench, k][None]
                sites = centres[q * len(study["times"]) + k].tolist()
                if surroundings:
                    picks = surrounding_centres(frames[q, k], lat, n_centres, g)
                    sites = picks[0] + picks[1]
                    state.setdefault("classes", {})[key] = [0] * len(picks[0]) + [1] * len(picks[1])
                state["done"][key] = swap_changes(ff, frames[q, k], lat, sites, radii, other, chunk=chunk)
                state["seconds"] = time.time() - t_start
                with atomic_write(state_path) as fh:
                    torch.save(state, fh)
            on_frame(_summary(study, L, radii, kTs, n_quench, n_centres, state))
    return _summary(study, L, radii, kTs, n_quench, n_centres, state)


def _summary(study, L, radii, kTs, n_quench, n_centres, state) -> dict:
    done = state["done"]
    changes = torch.cat([c[:, :, 0] for c, _ in done.values()])  # [S, n_R, K] (one replacement each)
    reference = torch.cat([r for _, r in done.values()])  # [S, K]
    value, error = relative_rms(changes, reference[:, None])
    n_frames = n_quench * len(study["times"])
    split = {}
    if "classes" in state:
        label = torch.tensor([c for key in done for c in state["classes"][key]])
        for j, name in enumerate(SURROUNDINGS):
            sel = label == j
            if sel.sum() >= 2:
                v, e = relative_rms(changes[sel], reference[sel][:, None])
                split[name] = {"samples": int(sel.sum()), "sensitivity": v.tolist(), "error": e.tolist(),
                               "rms_torque": reference[sel].mean(0).sqrt().tolist()}
    by_time = {}
    k_of = torch.tensor([int(key.split("-")[1]) for key, (_, r) in done.items() for _ in range(len(r))])
    for k, t in enumerate(study["times"]):
        sel = k_of == k
        if sel.sum() >= 1:  # each frame time on its own: how the torques and their far part change along the quench
            v, e = relative_rms(changes[sel], reference[sel][:, None])
            by_time[f"{t:g}"] = {"samples": int(sel.sum()), "sensitivity": v.tolist(), "error": torch.nan_to_num(e).tolist(),
                                 "rms_torque": reference[sel].mean(0).sqrt().tolist(),
                                 "rms_change": changes[sel].mean(0).sqrt().tolist()}
    return ({"by_surroundings": split} if split else {}) | {"by_time": by_time, "L": L, "radii": radii, "quenches": n_quench, "centres_per_frame": n_centres,
            "samples": len(changes), "complete": len(done) == n_frames,
            "mu": state["mu"].tolist(), "sensitivity": value.tolist(),
            "error": torch.nan_to_num(error).tolist(), "changes": changes.tolist(), "reference": reference.tolist(),
            "seconds": round(state["seconds"], 1)}


def _parse_samples(text: str) -> dict[int, tuple[int, int]]:
    out = dict(SAMPLES)
    for item in filter(None, text.split(",")):
        L, qc = item.split(":")
        q, c = qc.lower().split("x")
        out[int(L)] = (int(q), int(c))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lattice", choices=sorted(STUDIES))
    ap.add_argument("--sizes", default="12,24", help="comma-separated linear sizes L (default 12,24)")
    ap.add_argument("--samples", default="", help="L:QxC,... quenches and centres per frame (defaults: "
                    + ", ".join(f"{L}:{q}x{c}" for L, (q, c) in SAMPLES.items()) + ")")
    ap.add_argument("--kTs", default="0,0.05,0.1,0.2", help="comma-separated electron temperatures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--surroundings", action="store_true",
                    help="centres in FM clusters and in the Neel background, reported apart (square only)")
    ap.add_argument("--times", default="", help="comma-separated frame times (default: the study's)")
    ap.add_argument("--work", default="data/locality", help="folder of the resumable progress files")
    ap.add_argument("--json", required=True, help="results file (sizes already in it are kept)")
    args = ap.parse_args(argv)
    try:
        sizes = [int(x) for x in args.sizes.split(",")]
        kTs = [float(x) for x in args.kTs.split(",")]
        samples = _parse_samples(args.samples)
        times = [float(x) for x in args.times.split(",")] if args.times else None
    except ValueError:
        ap.error("--sizes, --kTs and --samples must be comma-separated numbers (samples as L:QxC)")
    if not all(L >= 6 for L in sizes) or not all(0 <= x <= 5 for x in kTs) or not all(L in samples for L in sizes):
        ap.error(f"need sizes >= 6 with a --samples entry, and kTs in [0, 5]; got {sizes}, {kTs}")
    if not all(q >= 2 and c >= 1 for q, c in samples.values()):
        ap.error("--samples needs at least 2 quenches (the replacement comes from another one) and 1 centre")
    if args.surroundings and args.lattice != "square":
        ap.error("--surroundings needs the square lattice (FM clusters in a Neel background)")
    if times is not None and not (times == sorted(set(times)) and times[0] > 0):
        ap.error(f"--times must be increasing and > 0, got {times}")
    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    study = STUDIES[args.lattice]
    path = Path(args.json)
    result = json.loads(path.read_text()) if path.exists() else {}
    if result and (result.get("kTs") != kTs or result.get("lattice") != args.lattice):
        ap.error(f"{path} holds another lattice or other kTs; use another --json")
    net = MLForceField.pretrained(study["network"])
    result |= {"lattice": args.lattice, "kTs": kTs, "J": study["J"], "t": 1.0,
               "ensemble": "grand canonical, mu fixed" if study["mu"] is not None else
               f"grand canonical at the frame's mu (canonical T_e = 0 solution at filling {study['filling']})",
               "mu": study["mu"], "filling": study["filling"], "network": study["network"],
               "network_sha256": net.weights_sha256,
               "quench": study["quench"] | {"times": times or study["times"], "initial": "uniform random spins"},
               "centres": ("per frame C sites with >= 3 of 4 bonds FM and C with none (surrounding_centres)"
                           if args.surroundings else "C random sites per frame"),
               "replacement": "the same frame of the next quench", "radii": study["radii"]}
    result.setdefault("sizes", {})
    result.setdefault("provenance", {})

    def write(summary):
        result["sizes"][str(summary["L"])] = summary
        write_json(path, result)

    for L in sizes:
        q, c = samples[L]
        result["provenance"][str(L)] = provenance()
        s = measure_size(args.lattice, L, q, c, kTs, args.seed, work, write, args.surroundings, times)
        write(s)
        for name, cls in s.get("by_surroundings", {}).items():
            print(f"  centres {name} ({cls['samples']}): " + "  ".join(
                f"R={R:g}: {v[0]:.3f}±{e[0]:.3f}" for R, v, e in zip(s["radii"], cls["sensitivity"], cls["error"])), flush=True)
        i = {R: j for j, R in enumerate(s["radii"])}
        for j, kT in enumerate(kTs):
            print(f"{args.lattice} L={L} T_e={kT:g} ({s['samples']} samples, {s['seconds']:.0f} s): "
                  + "  ".join(f"R={R:g}: {s['sensitivity'][i[R]][j]:.3f}±{s['error'][i[R]][j]:.3f}" for R in s["radii"]),
                  flush=True)


if __name__ == "__main__":
    main()
