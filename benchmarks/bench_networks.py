"""Cost per site of the triangular networks: the shipped one and those of book/runs/04-cpu-candidate.

One field evaluation (descriptor, site-energy network, fields = −∂E/∂S by autograd) of each
network on the same random L × L configuration, in float32 and float64, timed round-robin in one
run (``sdlib.timing.interleaved``: per round every network once; medians over rounds), so the
ratios to the shipped network hold under load. Each call is timed by the wall clock and by the CPU
clock of the process, which with one thread estimates the wall time on an idle machine; the ratio
to the shipped network (``ratio_to_shipped``) is that of the CPU clocks.

Networks of one architecture (the same descriptor and hidden widths) cost the same whatever their
weights: their rows are a check of the measurement's scatter.

Usage::

    python benchmarks/bench_networks.py [--L 64] [--repeat 5] [--threads 1] [--device cpu]
        [--out benchmarks/results_networks.md --json benchmarks/results_networks.json]

Chapter 04 reads the JSON (the µs per site of each network, beside its errors).
"""
from __future__ import annotations

import argparse
import json
import os
from datetime import date
from pathlib import Path

import torch

from sdlib import MLForceField, lattice, random_spins
from sdlib.provenance import hardware
from sdlib.timing import interleaved, median

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "book" / "runs" / "04-cpu-candidate"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def networks(lat, runs: Path = RUNS) -> dict:
    """{name: MLForceField on ``lat``}: the shipped triangular network, then every network in ``runs``."""
    nets = {"shipped": MLForceField.pretrained("triangular-tetrahedral", lattice=lat)}
    for p in sorted(runs.glob("*.safetensors")):
        nets[p.stem] = MLForceField.load(p.with_suffix(""), lattice=lat)
    return nets


def measure(L: int, repeat: int, device: str, runs: Path = RUNS) -> dict:
    lat = lattice.triangular(L)
    spins = random_spins(lat.n_sites, seed=0)
    rows = {}
    for name, ff in networks(lat, runs).items():
        rows[name] = {"cutoff": ff.descriptor.cutoff, "n_features": ff.descriptor.n_features,
                      "physics_kT": ff.physics.get("kT")}
    for dname, dtype in DTYPES.items():
        nets = {name: ff.to(device=device, dtype=dtype) for name, ff in networks(lat, runs).items()}
        x = spins.to(device=device, dtype=dtype)
        t = median(interleaved({name: (lambda ff=ff: ff(x).fields) for name, ff in nets.items()}, repeat=repeat,
                               clock="both"))
        for name in nets:
            rows[name][dname] = {"wall_us_per_site": 1e6 * t[name]["wall"] / lat.n_sites,
                                 "cpu_us_per_site": 1e6 * t[name]["cpu"] / lat.n_sites,
                                 "ratio_to_shipped": t[name]["cpu"] / t["shipped"]["cpu"]}
    return {"L": L, "repeat": repeat, "date": date.today().isoformat(), "hardware": hardware(device),
            "load": os.getloadavg()[0], "networks": rows}


def table(res: dict) -> str:
    hw = res["hardware"]
    lines = [f"L = {res['L']}, {hw['torch_threads']} thread(s), {hw.get('gpu', hw['cpu'])}, load "
             f"{res['load']:.1f}, {res['date']}; medians of {res['repeat']} interleaved rounds", "",
             "| network | cutoff | features | f32 µs/site (wall / cpu) | f64 µs/site (wall / cpu) | f32 / shipped |",
             "|---|---|---|---|---|---|"]
    for name, r in res["networks"].items():
        f32, f64 = r["float32"], r["float64"]
        lines.append(f"| {name} | {r['cutoff']:g} | {r['n_features']} | {f32['wall_us_per_site']:.1f} / "
                     f"{f32['cpu_us_per_site']:.1f} | {f64['wall_us_per_site']:.1f} / {f64['cpu_us_per_site']:.1f} "
                     f"| {f32['ratio_to_shipped']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--L", type=int, default=64, help="lattice size (>= 13: more than twice the largest cutoff, 6)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", default=str(RUNS), help="folder of the networks (*.safetensors + *.json)")
    ap.add_argument("--out", default=None, help="also write the Markdown table here")
    ap.add_argument("--json", default=None, help="write the numbers here (chapter 04 reads them)")
    a = ap.parse_args(argv)
    if a.L < 13:
        ap.error(f"--L must be >= 13 (the descriptors need L > 2 * cutoff, and cutoffs reach 6), got {a.L}")
    if a.repeat < 1:
        ap.error(f"--repeat must be >= 1, got {a.repeat}")
    torch.set_num_threads(a.threads)
    res = measure(a.L, a.repeat, a.device, Path(a.runs))
    md = table(res)
    print(md)
    if a.out:
        Path(a.out).write_text(md + "\n")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
