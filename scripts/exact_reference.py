"""Exact reference quenches of a study (``sdlib.datagen.reference``): resumable, one file per seed.

Usage (from the repository root)::

    # the square study's reference for chapter 05: 30 x 30, T_e = 0.05, f = 0.485, bath kT = 0.01, to t = 40
    python scripts/exact_reference.py square --out book/runs/05-exact-30x30 --seeds 0,1,2,3 --t-end 40 --bath-kT 0.01
    # in parallel on two cores: one process per seed (--seeds 0 and --seeds 1), --threads 1 each
    # inside a time window (a GPU call): --minutes 8 stops at the first checkpoint after 8 minutes
    # the triangular study's reference for chapter 04: 36 x 36, T_e = 0.1, mu = -2.4194, no bath, dt = 0.25
    python scripts/exact_reference.py triangular --out book/runs/04-exact-36x36 --seeds 0 --t-end 200 --bath-kT 0 \
        --set dt=0.25 --corr-every 2 --spins-every 10

Every call continues each seed from its file up to --t-end; a killed call loses at most 10 steps.
"""
from __future__ import annotations

import argparse

import torch

from sdlib.datagen import STUDIES, study
from sdlib.datagen.reference import CORR_EVERY, SPINS_EVERY, run_reference


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", choices=sorted(STUDIES))
    p.add_argument("--out", required=True, help="folder of the quench files seed<s>.pt")
    p.add_argument("--seeds", required=True, help="comma-separated seeds, e.g. 0,1,2,3")
    p.add_argument("--t-end", type=float, required=True, help="LLG time to reach (units hbar/t)")
    p.add_argument("--bath-kT", type=float, required=True, help="temperature of the LLG bath (units t)")
    p.add_argument("--minutes", type=float, default=None, help="stop at the first checkpoint after this")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="change a field of the recipe")
    p.add_argument("--corr-every", type=int, default=CORR_EVERY, help=f"steps between records of <S_i.S_j> and F/N "
                   f"(default {CORR_EVERY}; keep it for the whole run of a folder)")
    p.add_argument("--spins-every", type=int, default=SPINS_EVERY, help=f"steps between kept configurations "
                   f"(default {SPINS_EVERY}; keep it for the whole run of a folder)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cpu)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {a.seeds!r}")
    for name in ("corr_every", "spins_every"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be an integer >= 1, got {getattr(a, name)}")
    run_reference(study(a.study).with_settings(a.set), a.out, seeds, a.t_end, a.bath_kT, minutes=a.minutes,
                  device=a.device, corr_every=a.corr_every, spins_every=a.spins_every)


if __name__ == "__main__":
    main()
