"""Candidate force fields of a study, compared on one active run: held-out error and cost per site.

Which network a study ships is a measurement, not a guess: every candidate (a recipe variant —
another cutoff, descriptor or width) is trained as member 0 on *all* the labels an active run has
gathered (``round*/labels`` and ``baseline/labels`` of its work directory; labels are on the whole
lattice, so one data set serves every cutoff), in ``<work>/candidates/<name>/`` (resumable: a
finished candidate is loaded, a killed one resumes from its checkpoint). :func:`measure` gives its
relative torque error on the run's held-out frames — all of them, per window of quench time
(early / middle / late thirds of the recipe's frame times) and per bin of the local bond field
(:func:`error_by_bond_field`) — whether its N(μ) rises monotonically on those frames
(:func:`number_monotonicity`; where it does not, μ* at fixed filling is not unique) and its
inference cost in µs per site and evaluation on this machine; :func:`record_candidates` writes the comparison chapter 03 reads.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from ..analysis import bond_field
from ..ensemble import number_roots
from ..forcefield import torque
from ..io import atomic_write
from ..nn import MLForceField
from ..training import FieldDataset
from .committee import _rel, train_committee
from .label import chunk_files

__all__ = ["candidate_paths", "train_candidate", "heldout_times", "error_by_bond_field", "number_monotonicity", "canonical_fields", "measure",
           "record_candidates"]

LABEL_DIRS = ("round*/labels", "baseline/labels")
# bins of the local bond field φ_i = ¼ Σ_nn S_i·S_j for error_by_bond_field: Néel-like (φ → -1) to
# ferromagnetic (φ → 1) surroundings; the last edge is above 1 so that φ = 1 falls in the last bin
BOND_FIELD_EDGES = (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0 + 1e-9)
MU_SCAN_STEP = 2e-3  # grid of μ on which number_monotonicity looks for roots of N(μ) = N_e


def candidate_paths(work) -> list:
    """Every label chunk of the active run in ``work`` (all rounds, then the baseline's)."""
    work = Path(work)
    dirs = [d for pattern in LABEL_DIRS for d in sorted(work.glob(pattern))]
    paths = [p for d in dirs for p in chunk_files(d)]
    if not paths:
        raise ValueError(f"work = {work} holds no label chunks ({', '.join(LABEL_DIRS)}): run an active round first")
    return paths


def train_candidate(recipe, work, name: str, *, also=(), init_from=None, device=None, log=print,
                    **train_kw) -> MLForceField:
    """Member 0 of ``recipe`` trained on :func:`candidate_paths` of ``work`` and of every work
    directory in ``also`` (e.g. frames of later quench times gathered by another run of the same
    recipe), saved in ``<work>/candidates/<name>/`` (``train_committee``: ``init_from`` warm start,
    ``train_kw`` such as ``epochs`` and ``max_minutes``)."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a plain directory name, got {name!r}")
    also = [also] if isinstance(also, (str, Path)) else list(also)
    if any(Path(a).resolve() == Path(work).resolve() for a in also):
        raise ValueError(f"also must name work directories other than work = {work}: its labels are read once")
    paths = candidate_paths(work) + [p for a in also for p in candidate_paths(a)]
    out = Path(work) / "candidates" / name
    return train_committee(recipe, paths, out, members=[0], init_from=init_from, device=device,
                           log=log, **train_kw)[0]


def heldout_times(recipe, n_frames: int) -> torch.Tensor:
    """Quench time of each held-out frame, in the order ``make_heldout`` wrote them (per bath
    temperature, one quench, the recipe's frame times); ``n_frames`` must match that order."""
    times = torch.tensor(recipe.frame_times, dtype=torch.float64)
    if n_frames % len(times):
        raise ValueError(f"{n_frames} held-out frames are not a whole number of quenches of "
                         f"{len(times)} frame times: not written by make_heldout with this recipe")
    return times.repeat(n_frames // len(times))


def error_by_bond_field(spins, fields, ref, lattice, edges=BOND_FIELD_EDGES) -> dict:
    """Where a network's torque error lives: sites binned by their local bond field
    φ_i = (1/z) Σ_nn S_i·S_j (``sdlib.analysis.bond_field``; -1 Néel, +1 ferromagnetic surroundings).

    ``spins``, ``fields`` (the network's) and ``ref`` (exact) are ``[M, N, 3]``. Returns lists, one
    entry per bin ``[edges[k], edges[k+1])``: ``count`` (sites), ``error_rms`` = rms |T_i − T_i^ref|,
    ``torque_rms`` = rms |T_i^ref| and ``torque_rel`` = their ratio (None in an empty bin). In the
    double-exchange regime the holes gather where the surroundings are ferromagnetic, so a network
    that has not learnt their kinetic energy misses there first (chapter 03).
    """
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges must be at least two increasing numbers, got {edges}")
    phi = bond_field(spins, lattice).flatten()
    t_ref = torque(spins, ref)
    err = (torque(spins, fields) - t_ref).norm(dim=-1).flatten()
    mag = t_ref.norm(dim=-1).flatten()
    out = {"edges": edges, "count": [], "error_rms": [], "torque_rms": [], "torque_rel": []}
    for lo, hi in zip(edges, edges[1:]):
        m = (phi >= lo) & (phi < hi)
        n = int(m.sum())
        e_rms, t_rms = (err[m].pow(2).mean().sqrt().item(), mag[m].pow(2).mean().sqrt().item()) if n else (None, None)
        out["count"].append(n)
        out["error_rms"].append(e_rms)
        out["torque_rms"].append(t_rms)
        out["torque_rel"].append(e_rms / t_rms if n and t_rms > 0 else None)
    return out


@torch.no_grad()
def number_monotonicity(ff: MLForceField, spins: torch.Tensor, step: float = MU_SCAN_STEP, batch: int = 4) -> dict | None:
    """How far the μ-input, fixed-filling network ``ff`` is from an increasing N(μ) on the frames
    ``spins`` ``[M, N, 3]`` (None for any other network): on a grid of its trained μ range with spacing
    ``step`` (:func:`sdlib.ensemble.number_roots`), the frames with more than one solution of
    N(μ) = N_e (a μ* that depends on where the search starts), the roots per frame, and the largest
    decrease of N anywhere in the range (electrons; the exact N(μ) never decreases)."""
    if not ff.mu_input or ff.n_electrons is None:
        return None
    lo, hi = ff.physics["mu_range"]
    mus = torch.arange(lo, hi + 0.5 * step, step, dtype=torch.float64).clamp(max=hi)
    scans = [r for k in range(0, len(spins), batch)
             for r in number_roots(ff.grand_state(spins[k:k + batch].to(ff.dtype)), ff.n_electrons, mus)]
    drops = sorted(r["largest_drop"] for r in scans)
    return {"frames": len(scans), "frames_with_several_roots": sum(len(r["roots"]) > 1 for r in scans),
            "roots_per_frame": [len(r["roots"]) for r in scans], "largest_drop": drops[-1],
            "median_drop": drops[len(drops) // 2], "mu_step": step}


def canonical_fields(ff: MLForceField, spins: torch.Tensor):
    """Fields ``[M, N, 3]``, μ* ``[M]`` and the failed frames of the fixed-filling network ``ff`` on
    the frames ``spins`` ``[M, N, 3]``, frame by frame, each from a fresh search
    (``MLForceField.solve_mu``: no previous μ* to start from). Where the search fails (N(μ) falls back
    below N_e inside the trained range, so N(hi) < N_e: a plain μ-input head far from its labels'
    window), the lowest rising root of a grid scan (``ensemble.number_roots``) stands in, the root a
    search from below finds; those frames are listed. A frame with no rising root at all raises."""
    if not ff.mu_input or ff.n_electrons is None:
        raise ValueError("canonical_fields needs a mu-input network used at fixed filling")
    fields, mus, failed = [], [], []
    grid = torch.linspace(*ff.physics["mu_range"], 4401, dtype=torch.float64)
    for i in range(len(spins)):
        try:
            mu = ff.solve_mu(spins[i])
        except ValueError:
            (scan,) = number_roots(ff.grand_state(spins[i]), ff.n_electrons, grid)
            rising = [r for r, up in zip(scan["roots"], scan["rising"]) if up]
            if not rising:
                raise
            mu, _ = rising[0], failed.append(i)
        out = ff.grand(spins[i], mu)
        fields.append(out.fields)
        mus.append(float(out.mu))
    return torch.stack(fields), torch.tensor(mus, dtype=torch.float64), failed


def _windows(recipe) -> dict:
    ft = list(recipe.frame_times)
    k = len(ft)
    cuts = [ft[: max(1, k // 3)], ft[max(1, k // 3): max(2, 2 * k // 3)], ft[max(2, 2 * k // 3):]]
    return {label: (min(c), max(c)) for label, c in zip(("early", "middle", "late"), cuts) if c}


@torch.no_grad()
def measure(stem, recipe, work, *, L_cost: int = 64, repeats: int = 3, batch: int = 4) -> dict:
    """Held-out relative torque error of the saved network ``stem`` (float64: all frames, per
    time window, per bond-field bin) and its cost: µs per site of one evaluation (fast path, float32 and float64, one
    configuration of ``L_cost`` × ``L_cost`` evaluated again, so a fixed-filling network starts its
    μ* search at the right cell; median of ``repeats``; this machine's current threads), and
    :func:`number_monotonicity` on the held-out frames."""
    data = FieldDataset(Path(work) / "heldout" / "labels.h5")
    ff64 = MLForceField.load(stem, lattice=recipe.lattice())
    fields = torch.cat([ff64(data.spins[k:k + batch]).fields for k in range(0, len(data), batch)])

    def rel(mask):  # over the frames of mask
        return _rel(data.spins[mask], fields[mask], data.fields[mask])

    times = heldout_times(recipe, len(data))
    windows = {label: {"t": [lo, hi], "frames": int(((times >= lo) & (times <= hi)).sum()),
                       "torque_rel": rel((times >= lo) & (times <= hi))}
               for label, (lo, hi) in _windows(recipe).items()}
    cost = {}
    for dtype in (torch.float32, torch.float64):
        big = MLForceField.load(stem, lattice=recipe.replace(L=L_cost).lattice(), dtype=dtype)
        spins = torch.nn.functional.normalize(torch.randn(big.n_sites, 3, generator=torch.Generator().manual_seed(0),
                                                          dtype=dtype), dim=-1)
        big(spins)  # warm-up
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            big(spins)
            runs.append(time.perf_counter() - t0)
        cost[str(dtype).removeprefix("torch.")] = sorted(runs)[len(runs) // 2] / big.n_sites * 1e6
    by_phi = error_by_bond_field(data.spins, fields, data.fields, recipe.lattice())
    return {"heldout_torque_rel": rel(slice(None)), "heldout_frames": len(data), "windows": windows, "by_bond_field": by_phi,
            "number_monotonicity": number_monotonicity(ff64, data.spins), "us_per_site": cost, "cost_L": L_cost, "threads": torch.get_num_threads()}


def _networks(work: Path) -> dict:
    """The run's own member 0 of its last round and its baseline network, then every candidate."""
    rounds = sorted(work.glob("round*/committee/member0.json"), key=lambda p: int(p.parent.parent.name[5:]))
    found = {f"{rounds[-1].parent.parent.name} member 0": rounds[-1]} if rounds else {}
    if (work / "baseline" / "network" / "member0.json").exists():
        found["baseline"] = work / "baseline" / "network" / "member0.json"
    found |= {p.parent.name: p for p in sorted(work.glob("candidates/*/member0.json"))}
    return {name: p.with_suffix("") for name, p in found.items()}


def record_candidates(work, out, log=print, **measure_kw) -> dict:
    """``out/candidates.json``: the networks of the active run in ``work`` — member 0 of its last
    round, its baseline, and every finished candidate in ``<work>/candidates/`` — each with its
    cutoffs and widths, descriptor size, training provenance (its recipe is in it) and
    :func:`measure` (``measure_kw``: e.g. ``L_cost``); a network that cannot be evaluated at the
    recipe's ensemble (a μ-input network from random weights whose N(μ) does not reach N_e yet) gets
    ``heldout_torque_rel`` None and the reason under ``failed``. Returns what it wrote."""
    from .recipes import Recipe

    work, out = Path(work), Path(out)
    rows = {}
    for name, stem in _networks(work).items():
        cfg = json.loads(stem.with_suffix(".json").read_text())
        prov = cfg["provenance"]
        recipe = Recipe(**prov["recipe"])
        rows[name] = {"network": str(stem), "cutoff": recipe.cutoff, "phase_cutoff": recipe.phase_cutoff,
                      "hidden": list(recipe.hidden), "n_features": cfg["n_features"],
                      "weights_sha256": cfg["weights_sha256"], "frames": prov.get("frames"),
                      "best_epoch": prov.get("best_epoch"), "stopped": prov.get("stopped"),
                      "train_wall_s": prov.get("wall_s"), "init_from": prov.get("init_from"),
                      "lr": [prov["training"]["lr"], prov["training"]["lr_final"]], "epochs": prov["training"]["epochs"],
                      "fm_weight": prov["training"].get("fm_weight", 1.0), "grad_clip": prov["training"].get("grad_clip"),
                      "frame_norm": prov["training"].get("frame_norm", False),
                      "levels": cfg.get("levels", 0)}
        try:
            rows[name] |= measure(stem, recipe, work, **measure_kw)
        except ValueError as e:  # e.g. a μ-input network whose N(μ) does not reach N_e yet
            rows[name] |= {"heldout_torque_rel": None, "failed": str(e)}
            log(f"{name}: cannot be evaluated at the recipe's ensemble: {e}")
            continue
        mono = rows[name]["number_monotonicity"]
        roots = "" if mono is None else (f", N(μ) = N_e with several roots on {mono['frames_with_several_roots']} of "
                                         f"{mono['frames']} frames (largest drop of N {mono['largest_drop']:.3g})")
        log(f"{name}: held-out {rows[name]['heldout_torque_rel']:.4f}, "
            f"{rows[name]['us_per_site']['float32']:.1f} µs/site (float32){roots}")
    summary = {"work": str(work), "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
               "networks": rows}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "candidates.json", mode="w") as fh:
        json.dump(summary, fh, indent=1)
    return summary
