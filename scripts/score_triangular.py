"""Triangular networks judged against the study's physics (T_e = 0.1, grand canonical at μ = −2.4194).

For every model (a saved stem, or the name of a model shipped in ``sdlib/data``):

- the relative torque error on held-out frames of a data-engine run (``--heldout``: labels in the
  recipe's ensemble, ``datagen.make_heldout``), overall and per frame time;
- the relative torque error on stored configurations of the exact quenches (``--reference``, by default
  the 36 × 36 ones of ``book/runs/04-exact-36x36``; every ``--every``-th stored frame; exact fields of
  the recipe's dynamics, cached in ``--work``), in all, per frame, and over the frames at t ≥ 100 (once
  domains exist; their torques are several times smaller, and they decide the coarsening);
- optionally (``--heldout-late``) a second held-out set, e.g. of later quench times; or, instead of
  both, ``--heldout-from SCORES``: the held-out rows of an earlier score file, for models of the same
  weights (exact quenches that have run further are scored without the held-out labels at hand);
- the replay from those quenches' initial spins: the chirality correlation length L(t) against exact,
  the time L reaches one lattice constant, the largest |L/L_exact − 1| at t ≥ 100.

Writes ``OUT`` (JSON, atomically). With ``--update`` the rows already in ``OUT`` of models not named
now are kept (after the new ones), provided they were scored against the same quenches, frames and
replay time: a network added later is scored alone.

    python scripts/score_triangular.py triangular-tetrahedral data/tri-cpu2/candidates/r5/member0 \
        --heldout data/tri-cpu2/heldout/labels.h5 --out book/runs/04-cpu-candidate/scores.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import h5py
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdlib import ExactSolver, SDModel, analysis  # noqa: E402
from sdlib.datagen import study  # noqa: E402
from sdlib.datagen.candidates import heldout_times  # noqa: E402
from sdlib.datagen.committee import _rel  # noqa: E402
from sdlib.datagen.reference import read_reference, reference_paths, replay_chirality  # noqa: E402
from sdlib.io import atomic_write, kept_rows  # noqa: E402
from sdlib.lattice import Lattice  # noqa: E402
from sdlib.nn import MLForceField  # noqa: E402
from sdlib.provenance import provenance  # noqa: E402
from sdlib.training import FieldDataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LATE = 100.0  # frames of the exact quenches at t >= LATE (domains exist) are also scored on their own
SHIPPED = ROOT / "sdlib" / "data"


def load(model: str, lattice: Lattice) -> MLForceField:
    stem = Path(model) if Path(model).parent.name else SHIPPED / model
    return MLForceField.load(stem, lattice=lattice)


def exact_fields(spins: torch.Tensor, path: Path, model: SDModel) -> torch.Tensor:
    """Exact fields of ``model`` (the recipe's dynamics: grand canonical at μ, T_e) on ``spins``
    ``[M, N, 3]``, cached in ``path``: a frame already there (the same spins) is not computed again, so a
    quench that has run further adds only its new frames."""
    cached = torch.load(path, weights_only=True) if path.exists() else {"spins": spins[:0], "fields": spins[:0]}
    solver, out = ExactSolver(model), []
    for x in spins:
        hit = [i for i in range(len(cached["spins"])) if torch.equal(cached["spins"][i], x)]
        out.append(cached["fields"][hit[0]] if hit else solver(x).fields)
    fields = torch.stack(out)
    keep = torch.cat([cached["spins"], spins]), torch.cat([cached["fields"], fields])
    uniq = {}
    for x, h in zip(*keep):
        uniq.setdefault(x.numpy().tobytes(), (x, h))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        torch.save({"spins": torch.stack([x for x, _ in uniq.values()]),
                    "fields": torch.stack([h for _, h in uniq.values()])}, fh)
    return fields


def side(spins: torch.Tensor) -> int:
    """The linear size L of the L x L lattice of configurations ``spins`` ``[..., L*L, 3]``."""
    return int(round(spins.shape[-2] ** 0.5))


def heldout_row(ff: MLForceField, held: FieldDataset, held_times: torch.Tensor, frame_times) -> dict:
    """Relative torque error of ``ff`` on the held-out frames ``held``, in all and per frame time."""
    f = torch.cat([ff(held.spins[i:i + 4]).fields for i in range(0, len(held), 4)])
    return {"lattice": side(held.spins), "frames": len(held), "torque_rel": _rel(held.spins, f, held.fields),
            "by_time": {f"{t:g}": _rel(held.spins[held_times == t], f[held_times == t], held.fields[held_times == t])
                        for t in frame_times}}


def read_heldout(path) -> tuple:
    """(labels, quench time of each frame, the frame times) of a held-out file of ``make_heldout``: the
    times are those of the recipe the file was made with (stored in it)."""
    with h5py.File(path, "r") as h5:
        made = json.loads(h5.attrs["params"])["recipe"]
    recipe = study("triangular").replace(frame_times=tuple(made["frame_times"]), bath_kT=tuple(made["bath_kT"]))
    held = FieldDataset(path)
    return held, heldout_times(recipe, len(held)), recipe.frame_times


def score(model: str, held: FieldDataset | None, held_times: torch.Tensor | None, frame_times, refs: list, frames: dict,
          log=print, late: tuple | None = None, carried: dict | None = None) -> dict:
    """The row of one model: ``held`` held-out labels and their quench times; ``refs`` the exact quenches
    (``read_reference`` arrays and "path"); ``frames`` {seed: (times, spins, exact fields)} of their
    scored configurations; ``late``: a second held-out set (labels, times, frame times), e.g. of later
    quench times. With ``held=None`` the held-out entries are taken from ``carried``, the model's row
    of an earlier score file, which must be of the same weights."""
    if held is None and carried is None:
        raise ValueError(f"{model}: give held-out labels or the row of an earlier score file (carried)")
    t0 = time.time()
    loaded = {}

    def on(n_side: int) -> MLForceField:  # the model on the n_side x n_side lattice, read once
        if n_side not in loaded:
            loaded[n_side] = load(model, Lattice("triangular", n_side))
        return loaded[n_side]

    ff = on(side(held.spins) if held is not None else carried["heldout"]["lattice"])
    row = {"model": model, "weights_sha256": ff.weights_sha256, "physics": ff.physics,
           "cutoff": ff.descriptor.cutoff, "n_features": ff.descriptor.n_features}
    if held is None:
        if carried.get("weights_sha256") != ff.weights_sha256:
            raise ValueError(f"{model}: its weights (sha256 {ff.weights_sha256[:12]}…) are not those its held-out "
                             f"row was scored with ({str(carried.get('weights_sha256'))[:12]}…); give --heldout")
        row |= {k: carried[k] for k in ("heldout", "heldout_late") if k in carried}
    else:
        row["heldout"] = heldout_row(ff, held, held_times, frame_times)
    if late is not None:
        row["heldout_late"] = heldout_row(on(side(late[0].spins)), *late)
    row["exact"] = {}
    for ref in refs:
        seed = ref["params"]["seed"]
        lat = Lattice("triangular", side(ref["spins"]))
        ffr = on(lat.L)
        t, s, h = frames[seed]
        f = torch.stack([ffr(x).fields for x in s])
        rep = replay_chirality(ffr, ref["path"], lat, t_end=ref["t_reached"])  # as read: a quench in progress grows
        tt, L_ex, L_ml = rep["t"], rep["L_exact"], rep["L_net"]
        late_dev = analysis.largest_deviation(tt, L_ml, L_ex, t_min=100)
        row["exact"][str(seed)] = {
            "lattice": lat.L, "torque_rel": _rel(s, f, h), "frame_t": t.tolist(),
            "torque_rel_late": _rel(s[t >= LATE], f[t >= LATE], h[t >= LATE]) if bool((t >= LATE).any()) else None,
            "torque_rel_per_frame": [_rel(s[i:i + 1], f[i:i + 1], h[i:i + 1]) for i in range(len(s))],
            "t": tt.tolist(), "L_exact": L_ex.tolist(), "L_ml": L_ml.tolist(),
            "onset_exact": analysis.onset_time(tt, L_ex), "onset_ml": analysis.onset_time(tt, L_ml),
            "late_dev": None if math.isnan(late_dev) else late_dev}
    row["wall_s"] = round(time.time() - t0, 1)
    log(json.dumps({k: row[k] for k in ("model", "heldout")}),
        {s: (round(v["torque_rel"], 3), round(v["onset_exact"], 1), round(v["onset_ml"], 1), v["late_dev"])
         for s, v in row["exact"].items()})
    return row


def replayed_to(refs: list) -> dict:
    """{seed: the last stored time each replay reaches} of the exact quenches as scored now."""
    return {str(r["params"]["seed"]): r["spins_t"][r["spins_t"] <= r["t_reached"] + 1e-9].max().item() for r in refs}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="saved stems or shipped names")
    ap.add_argument("--heldout", default=None, help="held-out labels of a data-engine run (labels.h5)")
    ap.add_argument("--heldout-from", default=None, metavar="SCORES", help="instead of --heldout (and --heldout-late): "
                    "take each model's held-out rows from this earlier score file (same weights), e.g. to add "
                    "exact quenches where the held-out labels are not at hand")
    ap.add_argument("--heldout-late", default=None, help="a second held-out set, e.g. of later quench times")
    ap.add_argument("--reference", default="book/runs/04-exact-36x36")
    ap.add_argument("--every", type=int, default=5, help="score every this many stored frames of the exact quenches")
    ap.add_argument("--work", default="data/score-tri", help="cache of the exact fields of those frames")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--update", action="store_true", help="keep OUT's rows of the models not named now")
    ap.add_argument("--t-end", type=float, default=None,
                    help="score the exact quenches only to this time (default: as far as each has run)")
    a = ap.parse_args(argv)
    if a.every < 1:
        ap.error(f"--every must be an integer >= 1, got {a.every}")
    torch.set_num_threads(a.threads)
    recipe = study("triangular")
    if (a.heldout is None) == (a.heldout_from is None):
        ap.error("give exactly one of --heldout and --heldout-from")
    if a.heldout_from is not None and a.heldout_late is not None:
        ap.error("--heldout-late goes with --heldout (--heldout-from carries the late rows too)")
    carried, prior = {}, {}
    if a.heldout_from is None:
        held, held_times, frame_times = read_heldout(a.heldout)  # make_heldout's order: per bath, one quench, the times
    else:
        held = held_times = frame_times = None
        prior = json.loads(Path(a.heldout_from).read_text())
        carried = {r["model"]: r for r in prior["models"]}
        missing = [m for m in a.models if m not in carried]
        if missing:
            ap.error(f"--heldout-from {a.heldout_from} holds no row of {', '.join(missing)}")
    late = None if a.heldout_late is None else read_heldout(a.heldout_late)
    refs = [read_reference(p) | {"path": p} for p in reference_paths(a.reference)]
    refs = [r for r in refs if r["t_reached"] >= 10]
    if a.t_end is not None:
        if not a.t_end >= 10:
            ap.error(f"--t-end must be >= 10 (the replay needs domains to compare), got {a.t_end}")
        for r in refs:  # the quench as it stood at t_end
            cut = r["spins_t"] <= a.t_end + 1e-9
            r.update(spins=r["spins"][cut], spins_t=r["spins_t"][cut], t_reached=min(r["t_reached"], a.t_end))
    frames = {}
    for r in refs:
        k = torch.arange(0, len(r["spins"]), a.every)
        lat = Lattice("triangular", side(r["spins"]))
        model = SDModel(lat, t=recipe.t, J=recipe.J, mu=recipe.mu, kT=recipe.kT)  # the recipe's dynamics there
        frames[r["params"]["seed"]] = (r["spins_t"][k], r["spins"][k],
                                       exact_fields(r["spins"][k], Path(a.work) / f"seed{r['params']['seed']}.pt", model))
    match = {"reference": a.reference, "heldout": a.heldout or prior.get("heldout"), "every": a.every,
             "replayed_to": replayed_to(refs)}
    if late is not None or "heldout_late" in prior:  # (absent otherwise: files scored without one stay comparable)
        match["heldout_late"] = a.heldout_late or prior["heldout_late"]
    kept = kept_rows(Path(a.out), match, a.models) if a.update else []
    rows = [score(m, held, held_times, frame_times, refs, frames, log=lambda *x: print(*x, flush=True), late=late,
                  carried=carried.get(m)) for m in a.models]
    rows += kept
    out = match | {"t_end": a.t_end, "models": rows,
           "recipe": recipe.to_dict(), "provenance": provenance()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(Path(a.out), mode="w") as fh:
        json.dump(out, fh, indent=1, default=str)
    return out


if __name__ == "__main__":
    main()
