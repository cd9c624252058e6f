"""Square fixed-filling networks scored against the exact 30 × 30 quenches of chapter 05, as the issue judges them.

For every model (a saved stem, or the name of a model shipped in ``sdlib/data``):

- the relative torque error at fixed filling (each frame's own μ*, a fresh search:
  ``datagen.candidates.canonical_fields``) against exact canonical fields (``ExactSolver`` at the
  square recipe's filling and T_e; ``datagen.label_fixed``, cached in ``--work``) on every stored
  frame of the reference quenches, overall and per time window (early t < 5, middle 5 <= t < 20,
  late t >= 20) and per seed;
- ``number_monotonicity`` on those frames and on the final spins of chapter 05's production run
  (a late 128 × 128 texture): whether N(μ) = N_e has one root;
- the replay (``datagen.reference.replay``: same initial state, LLG parameters and noise) to
  ``--t-end``: the largest |Δ⟨S_i·S_j⟩| against exact per seed (issue 20 asks ≤ 0.015 for t ≤ 40).

Each row also records how the model was trained (its provenance: settings, validation loss per
epoch, its error on the held-out quenches of its own data). Writes ``OUT`` (JSON, atomically); rows
of other models already in ``OUT`` (scored against the same reference) are kept, so models can be
added one call at a time.

    python scripts/score_models.py square-double-exchange data/lvl/square-double-exchange --out book/runs/03-level-head/shipped-recipe.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdlib.datagen import study  # noqa: E402
from sdlib.datagen.candidates import canonical_fields, number_monotonicity  # noqa: E402
from sdlib.datagen.committee import _rel  # noqa: E402
from sdlib.datagen.label import label_fixed  # noqa: E402
from sdlib.datagen.reference import read_reference, reference_paths, replay  # noqa: E402
from sdlib.io import atomic_write, kept_rows  # noqa: E402
from sdlib.lattice import Lattice  # noqa: E402
from sdlib.nn import MLForceField  # noqa: E402
from sdlib.provenance import provenance  # noqa: E402
from sdlib.results import final_spins  # noqa: E402
from sdlib.training import FieldDataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "sdlib" / "data"
WINDOWS = {"early": (0.0, 5.0), "middle": (5.0, 20.0), "late": (20.0, float("inf"))}


def stem_of(model: str) -> Path:
    """A saved stem as given, or the stem of a model shipped in ``sdlib/data``."""
    return Path(model) if Path(model).parent.name or Path(model + ".json").exists() else SHIPPED / model


def load(model: str, lattice: Lattice) -> MLForceField:
    return MLForceField.load(stem_of(model), lattice=lattice)


def training_record(model: str) -> dict:
    """How the model was trained (``scripts/make_models.py train``'s provenance): settings, the
    validation loss per epoch, where it stopped, and its error on the held-out quenches of its own data."""
    prov = json.loads(stem_of(model).with_suffix(".json").read_text())["provenance"]
    tr, hist = prov.get("training", {}), prov.get("history", {})
    held = prov.get("errors", {}).get("held_out_quenches", {})
    return {"lr": [tr.get("lr"), tr.get("lr_final")], "grad_clip": tr.get("grad_clip"), "levels": tr.get("levels", 0),
            "epochs": tr.get("epochs"), "epochs_run": prov.get("epochs_run"), "best_epoch": prov.get("best_epoch"),
            "stopped": prov.get("stopped"), "clipped_steps": prov.get("clipped_steps"),
            "frames": prov.get("data", {}).get("frames"), "wall_s": prov.get("wall_s_training"),
            "heldout_own_torque_rel": held.get("torque_rel"), "heldout_own_frames": held.get("n_frames"),
            "val_field": hist.get("val_field"), "train_loss": hist.get("train_loss")}


def score(model: str, refs: dict, exact: dict, t_end: float, late: torch.Tensor, log=print) -> dict:
    """The row of one model (module docstring): ``refs`` {seed: ``read_reference`` arrays and "path"},
    ``exact`` {seed: exact canonical fields of its stored frames}, ``late`` a late texture ``[B, N', 3]``."""
    first = next(iter(refs.values()))["spins"]
    lat = Lattice("square", int(round(first.shape[-2] ** 0.5)))
    ff = load(model, lat)
    if not ff.mu_input or ff.n_electrons is None:
        raise ValueError(f"{model}: not a fixed-filling mu-input network")
    spins = torch.cat([refs[s]["spins"] for s in refs])
    times = torch.cat([refs[s]["spins_t"] for s in refs])
    seed_of = torch.cat([torch.full((len(refs[s]["spins_t"]),), s) for s in refs])
    ref_fields = torch.cat([exact[s] for s in refs])
    t0 = time.time()
    fields, mu, failed = canonical_fields(ff, spins)
    row = {"model": model, "weights_sha256": ff.weights_sha256, "levels": ff.net.levels,
           "cutoff": ff.descriptor.cutoff, "n_features": ff.descriptor.n_features,
           "torque_rel": _rel(spins, fields, ref_fields), "frames": len(spins), "search_failed": len(failed),
           "mu_star": {"min": float(mu.min()), "max": float(mu.max())}}
    row["by_window"] = {}
    for name, (lo, hi) in WINDOWS.items():
        m = (times >= lo) & (times < hi)
        row["by_window"][name] = {"t": [lo, min(hi, float(times.max()))], "frames": int(m.sum()),
                                  "torque_rel": _rel(spins[m], fields[m], ref_fields[m])}
    row["by_seed"] = {str(s): _rel(spins[seed_of == s], fields[seed_of == s], ref_fields[seed_of == s]) for s in refs}
    row["monotonicity_frames"] = number_monotonicity(ff, spins)
    ff_late = load(model, Lattice("square", int(round(late.shape[1] ** 0.5))))
    row["monotonicity_late_128"] = number_monotonicity(ff_late, late)
    row["replay"] = {}
    for s, ex in refs.items():
        if ex["t_reached"] + 1e-9 < t_end:
            continue
        net = replay(ff, ex["path"], lat, t_end=t_end)
        k = len(net["t"])
        d = (net["corr"] - ex["corr"][:k]).abs()
        row["replay"][str(s)] = {"t_end": t_end, "max_dcorr": float(d.max()), "t_of_max": float(net["t"][int(d.argmax())]),
                                 "dcorr_at_end": float(net["corr"][-1] - ex["corr"][k - 1])}
    if row["replay"]:
        row["replay_max_dcorr"] = max(r["max_dcorr"] for r in row["replay"].values())
    row["wall_s"] = round(time.time() - t0, 1)
    log(f"{model}: torque {row['torque_rel']:.4f} (" + ", ".join(f"{k} {v['torque_rel']:.4f}" for k, v in
        row["by_window"].items()) + f"); several roots on {row['monotonicity_frames']['frames_with_several_roots']} "
        f"frames, late 128²: {row['monotonicity_late_128']['frames_with_several_roots']} of "
        f"{row['monotonicity_late_128']['frames']}; replay max |Δcorr| {row.get('replay_max_dcorr', float('nan')):.4f}")
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="saved stems or shipped names")
    ap.add_argument("--reference", default="book/runs/05-exact-30x30")
    ap.add_argument("--work", default="data/score", help="cache of the exact canonical fields of the reference frames")
    ap.add_argument("--out", required=True, help="JSON file")
    ap.add_argument("--t-end", type=float, default=40.0, help="replay to this time (seeds that reach it)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    recipe = study("square")
    refs = {int(p.stem[4:]): read_reference(p) | {"path": p} for p in reference_paths(a.reference)}
    if not refs:
        raise ValueError(f"no reference quenches in {a.reference}")
    n_sites = next(iter(refs.values()))["spins"].shape[-2]
    if n_sites != recipe.n_sites:
        raise ValueError(f"{a.reference} holds quenches of {n_sites} sites; the square recipe's exact labels are "
                         f"for {recipe.n_sites} ({recipe.L} x {recipe.L})")
    work = Path(a.work)
    exact = {s: FieldDataset(label_fixed(r["spins"], work / f"exact_seed{s}.h5", recipe)).fields for s, r in refs.items()}
    out = Path(a.out)
    kept = kept_rows(out, {"reference": a.reference, "seeds": sorted(refs), "t_end": a.t_end},
                     a.models)  # rows of other models scored before
    late = final_spins("05-square-phase-separation")
    rows = kept + [score(m, refs, exact, a.t_end, late, log=lambda *x: print(*x, flush=True)) for m in a.models]
    for r in rows:  # (a kept row whose network is no longer on this machine keeps its record)
        if stem_of(r["model"]).with_suffix(".json").exists() or "training" not in r:
            r["training"] = training_record(r["model"])
    summary = {"reference": a.reference, "seeds": sorted(refs), "t_end": a.t_end, "windows": WINDOWS,
               "recipe": recipe.to_dict(), "models": rows, "provenance": provenance()}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, mode="w") as fh:
        json.dump(summary, fh, indent=1, default=str)
    return summary


if __name__ == "__main__":
    main()
