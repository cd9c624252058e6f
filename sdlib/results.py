"""The book's committed results, read from the files that hold them: one source for each number.

- ``model_card(name)``: what a shipped network was trained on and its errors on held-out exact
  quenches (its provenance in ``sdlib/data/<name>.json``, written by ``scripts/make_models.py``);
- ``locality(name)``: swap sensitivity of the exact torques vs radius (``book/runs/03-locality``);
- ``coarsening_run()``, ``coarsening_sweep(name)``: chiral-domain coarsening, chapter 04's
  production run and its sweeps (``book/runs/04-triangular-coarsening``);
- ``phase_separation_run()``: arrested phase separation, chapter 05's production run
  (``book/runs/05-square-phase-separation``);
- ``run_figure(run, marker)``: a figure of a production run as its executed notebook shows it
  (``book/runs/<run>/<notebook>.ipynb``), e.g. its late snapshots;
- ``run_dir(run)``: the folder of a committed run, e.g. ``05-exact-30x30`` (exact reference
  quenches, ``sdlib.datagen.reference``);
- ``ml_benchmark()``: cost of the network against exact diagonalisation (``benchmarks/results_ml.json``);
- ``final_spins(run)``: the last configurations of a production run (``final_spins.safetensors``).

The book quotes these numbers through these functions rather than typing them, so a new model
or a new run changes every page that quotes it. The book and benchmark files are in a checkout
of the repository (sdlib installed in development mode), not in a wheel; ``root`` says where the
checkout is. Fits use ``sdlib.analysis.growth_exponent``, as the chapters do.
"""
from __future__ import annotations

import base64
import csv
import json
import math
import re
from pathlib import Path

import numpy as np

from .analysis import growth_exponent, mean_and_error

__all__ = ["ROOT", "model_card", "locality", "coarsening_run", "coarsening_sweep",
           "phase_separation_run", "ml_benchmark", "run_figure", "run_dir", "final_spins"]

DATA = Path(__file__).resolve().parent / "data"
ROOT = DATA.parent.parent  # the checkout (development install)
RUNS = Path("book") / "runs"


def run_dir(run: str, root: Path = ROOT) -> Path:
    """The folder ``book/runs/<run>`` of the checkout (raises if it is not there)."""
    path = Path(root) / RUNS / run
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found: the book's committed runs are read from a checkout of the "
                                "repository (pass root=<checkout>)")
    return path


def final_spins(run: str = "05-square-phase-separation", root: Path = ROOT):
    """The final configurations ``[B, N, 3]`` (float64, every spin of unit length) of a production
    run, from its ``final_spins.safetensors``. A run of float32 fields stores spins that are unit
    only to its rounding (~1e-5), which force fields refuse; they are normalised here once, in
    float64."""
    import torch
    from safetensors.torch import load_file

    path = run_dir(run, root) / "final_spins.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run {run!r} keeps no final configurations")
    spins = load_file(str(path))["spins"].to(torch.float64)
    return spins / spins.norm(dim=-1, keepdim=True)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the book's committed results are read from a "
                                "checkout of the repository (pass root=<checkout>)")
    return json.loads(path.read_text())


def model_card(name: str) -> dict:
    """A shipped network's training and accuracy, from its provenance.

    Keys: ``lattice``, ``L`` (side of the exact-diagonalisation lattice of its data), ``J``,
    ``filling``, ``kT`` (electron temperature of its labels), ``cutoff`` (descriptor radius, in
    lattice constants), ``frames`` (train, validation, test), ``torque_error`` (relative rms error
    of the torque S × H on held-out exact quenches: rms |T_net − T_exact| / rms |T_exact|),
    ``energy_error`` (rms error of the energy per site there, units of t), ``held_out_frames``,
    ``weights_sha256``.
    """
    cfg = _read(DATA / f"{name}.json")
    physics, prov = cfg["physics"], cfg["provenance"]
    held_out = prov["errors"]["held_out_quenches"]
    return {"name": name, "lattice": physics["lattice"], "L": physics["L"], "J": physics["J"],
            "filling": physics["filling"], "kT": physics["kT"], "cutoff": cfg["descriptor"]["cutoff"],
            "frames": tuple(prov["data"]["frames"]), "torque_error": held_out["torque_rel"],
            "energy_error": held_out["energy_rmse_per_site"], "held_out_frames": held_out["n_frames"],
            "weights_sha256": cfg["weights_sha256"]}


def locality(name: str, root: Path = ROOT) -> dict:
    """Swap sensitivity of the exact torques of a model's training frames (chapter 03): the
    relative rms change of a site's torque when every spin farther than R is replaced by another
    quench's. Returns ``{"radii": [...], "sensitivity": {ensemble: [value per radius]}}``, the
    ensembles of ``<name>.json`` and, where measured, of ``<name>-Te.json`` (higher T_e)."""
    base = Path(root) / RUNS / "03-locality"
    out = _read(base / f"{name}.json")
    result = {"radii": list(out["radii"]), "sensitivity": dict(out["sensitivity"])}
    extra = base / f"{name}-Te.json"
    if extra.is_file():
        more = _read(extra)
        if list(more["radii"]) == result["radii"]:
            result["sensitivity"] |= more["sensitivity"]
    return result


def _side(n_sites: int) -> int:
    side = math.isqrt(n_sites)
    return side if side * side == n_sites else n_sites


def coarsening_run(root: Path = ROOT, run: str = "04-triangular-coarsening") -> dict:
    """Chapter 04's production run ``run`` (a folder of book/runs): L(t) of the chirality domains and
    its fitted exponents.

    Keys: ``L_big`` (lattice side), ``n_quenches``, ``t_end`` (ħ/t), ``t_fit`` (start of the fit),
    ``J``, ``kT``, ``n_L`` and ``n_wall`` ((exponent, standard error) of L ∝ t^n from the
    chirality correlation length and from the wall length, fitted for t ≥ t_fit as in the run),
    ``halves``: the same two fits in the two halves of that window in log t, as
    ``[((t_lo, t_hi), n_L, n_wall), ...]`` (how the exponent drifts), ``L_end``, ``wall_end``,
    ``model_sha256``, ``model_path`` (None: the shipped network), ``dt`` and the network-vs-ED check: ``ref_L`` (side), ``ref_quenches``,
    ``ref_t_end``, ``ref_max_dE`` (largest difference of the quench-mean energy per site, units of t),
    and the curves as float arrays: ``t``, ``L``, ``L_err`` (standard error over the quenches) and
    ``l_wall`` (NaN where the run recorded none)."""
    folder = Path(root) / RUNS / run
    s, v = _read(folder / "summary.json"), _read(folder / "validation.json")
    p = s["params"]
    t, L = (np.asarray(s[k], dtype=float) for k in ("t", "L"))
    wall = np.array([np.nan if w is None else w for w in s["l_wall"]], dtype=float)
    t_mid = math.sqrt(p["t_fit"] * float(t[-1]))
    halves = [((lo, hi), growth_exponent(t, L, lo, hi), growth_exponent(t, wall, lo, hi))
              for lo, hi in ((p["t_fit"], t_mid), (t_mid, float(t[-1])))]
    dE = np.abs(np.asarray(v["E_ml"]) - np.asarray(v["E_reference"])).max()
    return {"L_big": p["L_big"], "n_quenches": s["n_seeds"], "t_end": s["t"][-1], "t_fit": p["t_fit"],
            "J": p["J"], "kT": p["kT"], "n_L": tuple(s["growth_exponent"]),
            "n_wall": tuple(s["growth_exponent_wall"]), "halves": halves, "L_end": s["L"][-1], "wall_end": s["l_wall"][-1],
            "model_sha256": p.get("model_sha256"), "model_path": p.get("model_path") or None, "dt": p["dt"],
            "ref_L": _side(v["n_sites"]), "ref_quenches": v["n_seeds"],
            "ref_t_end": v["t"][-1], "ref_max_dE": float(dE), "t": t, "L": L,
            "L_err": np.asarray(s["L_err"], dtype=float), "l_wall": wall}


def _number(row: dict, key: str):
    value = row.get(key)
    return float(value) if value not in (None, "") else None


def coarsening_sweep(name: str, root: Path = ROOT) -> list:
    """The points of a sweep of chapter 04 (``"sweep_J"``, ``"sweep_kT"``), from the batch
    tables (``summary.csv``) below ``book/runs/04-triangular-coarsening/<name>``: one dict per
    finished run with ``J`` and ``kT`` (None where the table does not record them), ``L_big``,
    ``t_end``, ``t_fit``, ``n_L`` ((exponent, error) from the chirality correlation length),
    ``n_wall`` (exponent from the wall length) and ``L_end``; sorted by kT, J, lattice, time."""
    import csv

    points = []
    for path in sorted((Path(root) / RUNS / "04-triangular-coarsening" / name).glob("**/summary.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("status") != "ok":
                    continue
                points.append({"J": _number(row, "J"), "kT": _number(row, "kT"), "L_big": int(row["L_big"]),
                               "t_end": float(row["t_big"]), "t_fit": float(row["t_fit"]),
                               "n_L": (float(row["growth_exponent"]), float(row["growth_exponent_err"])),
                               "n_wall": float(row["growth_exponent_wall"]), "L_end": float(row["L_final"])})
    order = lambda q: (q["kT"] or 0.0, q["J"] or 0.0, -q["L_big"], q["t_end"])
    return sorted(points, key=order)


def phase_separation_run(root: Path = ROOT) -> dict:
    """Chapter 05's production run: the FM-cluster length L(t) of one large quench.

    Keys: ``L`` (lattice side), ``n_quenches``, ``t_end``, ``kT``, ``threshold`` (bond-field
    threshold of the clusters), ``t_start`` / ``t_split`` (the early fit is t_start ≤ t ≤ t_split,
    the late one t ≥ t_split), ``n_early`` / ``n_late`` ((exponent, standard error) of L ∝ t^n),
    ``L_end``, ``n_early_quenches`` / ``n_late_quenches`` ((mean, standard error) over the quenches of
    their own exponents in the same windows; None for a run of one quench or one that predates
    them), and the network-vs-ED check: ``ref_L``, ``ref_quenches``, ``ref_t_end``,
    ``ref_max_dcorr`` (largest difference of the mean nearest-neighbour S_i·S_j) and
    ``ref_max_dE`` (of the energy per site, units of t), ``clusters`` (:func:`printed_clusters`),
    ``exact30``: the replay against the exact 30 × 30 quenches (``seeds``, ``t_end``, ``max_dcorr`` over
    seeds and times, ``mean_dcorr`` of the seed mean), None for a run made without it; ``committee``:
    the shipped committee's spread against the exact torques of those frames and along the large
    quench (``validation.json``'s ``committee``), None for a run made without it."""
    run = Path(root) / RUNS / "05-square-phase-separation"
    s, v = _read(run / "summary.json"), _read(run / "validation.json")
    p, e = s["params"], s["exponents"]
    diff = lambda a, b: float(np.abs(np.asarray(v[a]) - np.asarray(v[b])).max())
    return {"L": p["L"], "n_quenches": s["n_seeds"], "t_end": s["t"][-1], "kT": p["kT"],
            "threshold": p["threshold"], "t_start": e["t_start"], "t_split": e["t_split"],
            "n_early": tuple(e["early"]), "n_late": tuple(e["late"]), "L_end": s["L"][-1],
            **{f"n_{w}_quenches": _spread(s.get("exponents_per_quench", {}).get(w, [])) for w in ("early", "late")},
            "ref_L": _side(v["n_sites"]), "ref_quenches": len(v["corr_ml"]), "ref_t_end": v["t"][-1],
            "ref_max_dcorr": diff("corr_ml", "corr_reference"), "ref_max_dE": diff("energy_ml", "energy_reference"),
            "clusters": printed_clusters("05-square-phase-separation", root), "exact30": _replay(v.get("exact_30x30")),
            "committee": v.get("committee") or None}


def _replay(rows) -> dict | None:
    """Largest |Δ⟨S_i·S_j⟩| of a chapter-05 replay (``validation.json``'s ``exact_30x30``) over seeds
    and times, and of the seed mean over the times all seeds share."""
    if not rows:
        return None
    n = min(len(r["t"]) for r in rows)
    d = np.array([np.subtract(r["corr_ml"][:n], r["corr_exact"][:n]) for r in rows])
    return {"seeds": [r["seed"] for r in rows], "t_end": float(rows[0]["t"][n - 1]),
            "max_dcorr": float(np.abs(d).max()), "mean_dcorr": float(np.abs(d.mean(0)).max())}


def _spread(values) -> tuple[float, float] | None:
    """(mean, standard error) of the finite values, None for fewer than two."""
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    return tuple(float(x) for x in mean_and_error(v)) if len(v) >= 2 else None


_CLUSTERS = re.compile(r"at t = ([\d.]+): ([\d.]+) clusters per quench, ([\d.]+) % of the sites")


def printed_clusters(run: str, root: Path = ROOT) -> dict | None:
    """The FM-cluster census a committed chapter-05 run printed at its last time: ``{"t", "per_quench",
    "percent_sites"}``, or None if the run printed none.

    The run's summary.json predates the census, which its executed notebook prints as
    ``at t = <t>: <n> clusters per quench, <p> % of the sites ...``; only text outputs are read
    (never the cells' source)."""
    text = "".join("".join(out.get("text", "")) for cell in json.loads(_run_notebook(run, root).read_text())["cells"]
                   if cell["cell_type"] == "code" for out in cell.get("outputs", []))
    hits = _CLUSTERS.findall(text)
    if not hits:
        return None
    t, n, pct = (float(v) for v in hits[-1])
    return {"t": t, "per_quench": n, "percent_sites": pct}


def ml_benchmark(root: Path = ROOT, device: str = "cpu") -> dict:
    """Cost of the shipped square network (``benchmarks/bench_ml.py``): ``exponent_f64`` /
    ``exponent_f32`` (time per evaluation ∝ N^p, 32² ≤ N ≤ 512²), ``speedup_ed`` ({L: (float64,
    float32)} against one exact diagonalisation at the same N, measured interleaved), ``threads``,
    ``cpu``, ``date``."""
    bench = _read(Path(root) / "benchmarks" / "results_ml.json")
    s = bench["summary"][device]
    run = bench["runs"][-1]
    return {"exponent_f64": s["exponents"]["ml64_eval"], "exponent_f32": s["exponents"]["ml32_eval"],
            "speedup_ed": {q["L"]: (q["speedup64"], q["speedup32"]) for q in s["ratios"] if q["reference"] == "ed"},
            "threads": s["exponents"]["threads"], "cpu": run["cpu"], "date": run["date"]}


def _run_notebook(run: str, root: Path) -> Path:
    """The executed notebook of the committed run ``book/runs/<run>`` (exactly one)."""
    base = run_dir(run, root)
    notebooks = sorted(base.glob("*.ipynb"))
    if len(notebooks) != 1:
        raise FileNotFoundError(f"{base}: expected one executed notebook of the run, found {len(notebooks)}")
    return notebooks[0]


def run_figure(run: str, marker: str, root: Path = ROOT) -> bytes:
    """The PNG figure printed by a committed production run: the first image output of the cell of
    ``book/runs/<run>/*.ipynb`` (the run's executed notebook) whose source contains ``marker``.

    The production runs are too large to re-execute when the book is built; their notebooks keep
    the figures they drew, and the chapters show them from there (snapshots, for instance)."""
    notebook = _run_notebook(run, root)
    cells = json.loads(notebook.read_text())["cells"]
    hits = [c for c in cells if c["cell_type"] == "code" and marker in "".join(c["source"])]
    if not hits:
        raise ValueError(f"no code cell of {notebook.name} contains marker {marker!r}")
    for out in hits[0].get("outputs", []):
        png = out.get("data", {}).get("image/png")
        if png:
            return base64.b64decode("".join(png) if isinstance(png, list) else png)
    raise ValueError(f"the cell of {notebook.name} with marker {marker!r} has no PNG output")
