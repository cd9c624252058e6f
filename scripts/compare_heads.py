"""The plain μ-input head against the level head (sdlib.levelhead): same frames, same training, random start.

Frames: the exact 30 × 30 reference quenches of the square study (book/runs/05-exact-30x30: every
2.5 ħ/t from t = 0 to 40), labelled on the square recipe's μ grid (``datagen.label_pool``: one eigh
per frame, resumable chunks). Seeds ``--train`` train (a random 15 % of their frames for early
stopping, as a committee member); seed ``--test`` is held out: its exact canonical fields
(``datagen.label_fixed``: ``ExactSolver`` at the recipe's filling) are the reference. Each head is the recipe's network at ``--set`` changes (default
r_c = 3.5, phase cutoff 2.3, 64 × 64), trained by ``datagen.committee.train_committee`` (float32,
checkpointed: a killed run resumes). Writes ``OUT/heads.json``: per head, the held-out relative
torque error at fixed filling (the network's own μ*; ``datagen.candidates.canonical_fields``), overall and per frame time,
its μ*, the frames on which the library's μ* search failed, and ``number_monotonicity`` on the
held-out frames.

    python scripts/compare_heads.py --work data/heads --out book/runs/03-level-head --epochs 300 --levels 0,16,32
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdlib.datagen import study  # noqa: E402
from sdlib.datagen.candidates import canonical_fields, number_monotonicity  # noqa: E402
from sdlib.datagen.committee import _rel, train_committee  # noqa: E402
from sdlib.datagen.label import chunk_files, label_fixed, label_pool, write_frames  # noqa: E402
from sdlib.datagen.reference import read_reference, reference_paths  # noqa: E402
from sdlib.io import atomic_write  # noqa: E402
from sdlib.training import FieldDataset  # noqa: E402
from sdlib.provenance import provenance  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", default="book/runs/05-exact-30x30")
    ap.add_argument("--work", required=True, help="labels, exact held-out fields and the trained networks")
    ap.add_argument("--out", required=True, help="folder of heads.json")
    ap.add_argument("--train", default="0,1,2", help="seeds whose frames train")
    ap.add_argument("--test", type=int, default=3, help="the held-out seed")
    ap.add_argument("--levels", default="0,16", help="heads to compare: 0 = plain μ input, K = K levels")
    ap.add_argument("--set", action="append", default=None, help="recipe changes (default cutoff=3.5)")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--patience", type=int, default=50, help="epochs without a better validation loss before stopping")
    ap.add_argument("--max-minutes", type=float, default=None, help="per head")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    work, out = Path(a.work), Path(a.out)
    recipe = study("square").with_settings(a.set or ["cutoff=3.5", "phase_cutoff=2.3"])
    refs = {int(p.stem[4:]): read_reference(p) for p in reference_paths(a.reference)}
    train_seeds = [int(s) for s in a.train.split(",")]
    if a.test in train_seeds or any(s not in refs for s in train_seeds + [a.test]):
        raise ValueError(f"--train {a.train} and --test {a.test} must be different seeds of {sorted(refs)}")
    for s in train_seeds:
        pool, t = work / "labels" / f"seed{s}.h5", refs[s]["spins_t"]
        if not pool.exists():
            n = len(t)
            write_frames(pool, refs[s]["spins"], {"round": [0] * n, "time": t.tolist(), "bath_kT": [0.01] * n,
                                                  "score": [float("nan")] * n, "source": ["exact"] * n})
        label_pool(pool, work / "labels" / f"seed{s}", recipe)
    test = refs[a.test]["spins"]
    heldout = FieldDataset(label_fixed(test, work / f"heldout_seed{a.test}.h5", recipe))
    rows = {}
    for k in (int(v) for v in a.levels.split(",")):
        name = "plain" if k == 0 else f"levels{k}"
        r = recipe.replace(levels=k)
        paths = [p for s in train_seeds for p in chunk_files(work / "labels" / f"seed{s}")]
        (ff,) = train_committee(r, paths, work / name, members=[0],
                                epochs=a.epochs, patience=a.patience, max_minutes=a.max_minutes, log=print)
        ff = ff.to(torch.float64)
        fields, mu, failed = canonical_fields(ff, test)
        t = refs[a.test]["spins_t"]
        rows[name] = {"levels": k, "training": ff.provenance, "heldout_torque_rel": _rel(test, fields, heldout.fields),
                      "by_time": {f"{float(t[i]):g}": _rel(test[i:i + 1], fields[i:i + 1], heldout.fields[i:i + 1])
                                  for i in range(len(t))},
                      "mu_star": mu.tolist(), "search_failed": failed,
                      "number_monotonicity": number_monotonicity(ff, test)}
        mono = rows[name]["number_monotonicity"]
        print(f"{name}: held-out {rows[name]['heldout_torque_rel']:.4f}; N(μ) = N_e with several roots on "
              f"{mono['frames_with_several_roots']} of {mono['frames']} frames, largest drop of N "
              f"{mono['largest_drop']:.3g}; the μ* search failed on {len(failed)} frames", flush=True)
    summary = {"recipe": recipe.to_dict(), "train_seeds": a.train, "test_seed": a.test, "epochs": a.epochs,
               "patience": a.patience,
               "threads": a.threads, "heads": rows, "provenance": provenance()}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "heads.json", mode="w") as fh:
        json.dump(summary, fh, indent=1, default=str)
    return summary


if __name__ == "__main__":
    main()
