"""How local are the reference torques of a shipped model's training data? (quoted in chapter 03)

Usage (from the repository root, after ``python scripts/make_models.py generate NAME``)::

    python scripts/measure_locality.py square-double-exchange [--data data/models] [--radii 2.3,3.5,4.6] \
        [--json book/runs/03-locality/square-double-exchange.json]
    python scripts/measure_locality.py triangular-tetrahedral --J 3 --data data/models-J3   # another J

For frames of four quench trajectories (at 1/8, 1/4, 1/2 and the end of each), the spins farther
than R from four sites are replaced by the same frame of the other three trajectories
(``sdlib.forcefield.cutoff_sensitivity`` with ``replacement``), and the relative rms change of
the exact torque on those sites is printed for three electron ensembles: the recipe's own
(canonical, fixed filling, T_e = 0), and the grand-canonical one at the chemical potential the
canonical solution has in that frame, at T_e = 0 and T_e = 0.05 (``--kTs`` sets other
temperatures). ``--json`` also writes them,
with the radii and the run's provenance, to a file (chapter 03 prints the committed ones).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sdlib import ExactSolver  # noqa: E402
from sdlib.forcefield import cutoff_sensitivity  # noqa: E402
from sdlib.io import read_trajectory  # noqa: E402
from sdlib.provenance import provenance, write_json  # noqa: E402

from make_models import RECIPES, apply_coupling, build_model, _check_coupling, grand_canonical_model  # noqa: E402


def measure(name: str, data_dir: str, radii: list[float], kTs=(0.0, 0.05)) -> dict[str, torch.Tensor]:
    physics = RECIPES[name]["physics"]
    model = build_model(physics)
    canonical = ExactSolver(model)
    files = sorted(glob.glob(os.path.join(data_dir, name, "quench_*.h5")))[:4]
    if len(files) < 2:
        raise SystemExit(f"need at least two quench files in {os.path.join(data_dir, name)}; run make_models.py generate")
    _check_coupling(files, physics)
    traj = [read_trajectory(p)["spins"] for p in files]
    n = min(len(t) for t in traj)
    sq = {"canonical, T_e = 0": []} | {f"grand canonical, T_e = {kT:g}": [] for kT in kTs}
    centres = [0, model.n_sites // 4 + 3, model.n_sites // 2 + 5, 3 * model.n_sites // 4 + 7]
    for k, spins in enumerate(traj):
        for fr in (n // 8, n // 4, n // 2, n - 1):
            s = spins[fr]
            others = torch.stack([t[fr] for j, t in enumerate(traj) if j != k])
            mu = float(canonical.chemical_potential(s))
            solvers = [canonical] + [ExactSolver(grand_canonical_model(physics, mu, kT)) for kT in kTs]
            for key, solver in zip(sq, solvers):
                sq[key].append(cutoff_sensitivity(solver, s, model.lattice, centres, radii, replacement=others) ** 2)
    return {key: torch.stack(v).mean(0).sqrt() for key, v in sq.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(RECIPES))
    ap.add_argument("--data", default="data/models")
    ap.add_argument("--radii", default="2.0,3.0,4.0,5.0", help="comma-separated distances R")
    ap.add_argument("--json", default=None, help="also write the result to this file")
    ap.add_argument("--kTs", default="0,0.05", help="comma-separated electron temperatures of the grand-canonical "
                    "ensemble (default 0,0.05)")
    ap.add_argument("--J", type=float, default=None, help="exchange coupling of data made by make_models.py --J")
    args = ap.parse_args(argv)
    apply_coupling(ap, args)
    torch.set_num_threads(1)
    radii = [float(r) for r in args.radii.split(",")]
    try:
        kTs = [float(x) for x in args.kTs.split(",")]
    except ValueError:
        ap.error(f"--kTs must be comma-separated numbers >= 0, got {args.kTs!r}")
    if not all(0 <= x <= 5 for x in kTs):
        ap.error(f"--kTs must lie in [0, 5], got {args.kTs!r}")
    result = {key: v.tolist() for key, v in measure(args.name, args.data, radii, kTs).items()}
    for key, v in result.items():
        print(f"{args.name} {key:28s} " + "  ".join(f"R={R:g}: {x:.3f}" for R, x in zip(radii, v)), flush=True)
    if args.json:
        write_json(args.json, {"model": args.name, "radii": radii, "sensitivity": result,
                               "recipe_physics": RECIPES[args.name]["physics"], **provenance()})


if __name__ == "__main__":
    main()
