"""ML force field speed: time per field evaluation and per LLG step vs N, against ED and KPM.

What is timed (square lattice, the double-exchange parameters t = 1, J = 6, filling 0.485):

* ML: one ``MLForceField`` evaluation (descriptor, site-energy network, fields = -dE/dS by
  autograd) in float64 and in float32, for L × L lattices, L = 32 … 512; and one LLG step
  (semi-implicit midpoint, two evaluations plus the integrator) for the same sizes.
  The model is the shipped ``square-double-exchange`` one when present, otherwise an untrained
  network of the same shape (the cost does not depend on the weights); the output says which.
* ED: one ``ExactSolver`` evaluation (kT = 0, fixed filling): Hamiltonian, ``eigh``, fields.
* KPM: one ``KPMSolver`` evaluation at fixed filling with kT = 0.1 (KPM needs kT > 0),
  ``--moments`` Chebyshev moments, Jackson kernel, probing distance ``--distance``.

Every ratio ML/ED and ML/KPM comes from calls interleaved at the same N in this one run
(``sdlib.timing.interleaved``: per round the reference once, then each ML variant once; medians
over rounds), so it holds under load. Power laws t = c·N^p are fitted to each series.
With a CUDA device the same measurements are repeated on it (ML up to L = 1024, where the LLG
throughput in site-steps per second is reported). Results: Markdown on stdout and in ``--out``,
the numbers in ``--json`` (read by book/06_performance).

Usage: ``python benchmarks/bench_ml.py [--threads 2] [--budget 1800]``.
"""
import argparse
import json
import math
import os
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from sdlib import LLG, ExactSolver, KPMSolver, MLForceField, SDModel, lattice
from sdlib.analysis import growth_exponent
from sdlib.descriptors import Descriptor
from sdlib.provenance import hardware
from sdlib.timing import interleaved

HERE = Path(__file__).resolve().parent
PHYSICS = {"lattice": "square", "L": 16, "t": 1.0, "J": 6.0, "filling": 0.485, "kT": 0.0}
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def make_ml(L, dtype, device):
    """The shipped square model on an L × L lattice, or an untrained one of the same shape."""
    lat = lattice.square(L)
    try:
        ff, weights = MLForceField.pretrained("square-double-exchange", lattice=lat), "shipped"
    except ValueError:
        torch.manual_seed(0)
        ff, weights = MLForceField(Descriptor(lat), hidden=(64, 64), physics=PHYSICS), "untrained (64, 64)"
    return ff.to(dtype).to(device), weights


def random_spins(n, dtype, device, seed=0):
    s = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return (s / s.norm(dim=-1, keepdim=True)).to(dtype).to(device)


def llg_stepper(ff, spins):
    """A callable doing one midpoint LLG step (two field evaluations) from the current state."""
    llg = LLG(ff, dt=0.01, alpha=0.5, kT=0.0, method="midpoint")
    state = [spins, ff(spins)]

    def step():
        state[0], state[1] = llg.step(state[0], state[1])
    return step


def ml_calls(L, device):
    """Field evaluation and LLG step of the ML model at both precisions, keyed like ``ml64_eval``."""
    calls, weights = {}, None
    for name, dtype in DTYPES.items():
        ff, weights = make_ml(L, dtype, device)
        s = random_spins(L * L, dtype, device)
        calls[f"ml{name[-2:]}_eval"] = lambda ff=ff, s=s: ff(s)
        calls[f"ml{name[-2:]}_step"] = llg_stepper(ff, s)
    return calls, weights


def reference(kind, L, device, args):
    model = SDModel(lattice.square(L), t=1.0, J=6.0, filling=0.485, kT=0.0 if kind == "ed" else 0.1)
    ff = ExactSolver(model) if kind == "ed" else KPMSolver(model, n_moments=args.moments, probing=args.distance)
    s = random_spins(L * L, torch.float64, device)
    return lambda: ff(s)


def measure(L, device, args, ref=None):
    """Median seconds of every call at size L (interleaved), with the reference first if given."""
    calls = {}
    if ref is not None:
        calls[ref] = reference(ref, L, device, args)
    ml, weights = ml_calls(L, device)
    calls.update(ml)
    for name, fn in calls.items():  # warm-up, except for references that cost seconds
        if name.startswith("ml") or L * L <= 1024:
            fn()
    slow = L * L >= 2 ** 16 or (ref == "ed" and L > 40) or (ref == "kpm" and L > 100)
    times = interleaved(calls, repeat=args.repeat_large if slow else args.repeat, warmup=False)
    return {k: statistics.median(v) for k, v in times.items()}, weights


def sweep(device, args, deadline):
    rows, weights = [], None
    plan = [(L, "ed") for L in args.ed_sizes] + [(L, "kpm") for L in args.kpm_sizes] + \
           [(L, None) for L in args.ml_sizes + (args.gpu_sizes if device == "cuda" else [])]
    last = {}
    for L, ref in plan:
        key = ref or "ml"
        if key in last:  # skip sizes whose projected time no longer fits in the budget
            L0, t0 = last[key]
            p = {"ed": 3.0, "kpm": 1.2, "ml": 1.1}[key]
            if time.perf_counter() + t0 * (L / L0) ** (2 * p) > deadline:
                print(f"  skipped {key} L={L} on {device}: over the time budget", flush=True)
                continue
        t_start = time.perf_counter()
        med, weights = measure(L, device, args, ref)
        last[key] = (L, time.perf_counter() - t_start)
        rows.append({"device": device, "L": L, "N": L * L, "reference": ref, **med})
        print(f"  {device} L={L} {ref or ''} " + " ".join(f"{k}={v:.4g}s" for k, v in med.items()), flush=True)
    return rows, weights


def exponent(rows, key, n_min=0, n_max=math.inf):
    pts = {r["N"]: r[key] for r in rows if key in r and n_min <= r["N"] <= n_max}
    if len(pts) < 3:
        return None
    return growth_exponent(list(pts), list(pts.values()))[0]


def summary(rows, device):
    rs = [r for r in rows if r["device"] == device]
    out = {"exponents": {}, "ratios": []}
    for key in ("ml64_eval", "ml32_eval", "ml64_step", "ml32_step"):
        out["exponents"][key] = exponent([r for r in rs if r["reference"] is None], key, 32 ** 2, 512 ** 2)
    for ref in ("ed", "kpm"):
        out["exponents"][ref] = exponent([r for r in rs if r["reference"] == ref], ref)
    for r in rs:
        if r["reference"]:
            out["ratios"].append({"L": r["L"], "reference": r["reference"], "t_ref": r[r["reference"]],
                                  "speedup64": r[r["reference"]] / r["ml64_eval"],
                                  "speedup32": r[r["reference"]] / r["ml32_eval"]})
    big = max((r for r in rs if r["reference"] is None), key=lambda r: r["N"], default=None)
    if big:
        out["site_steps_per_s"] = {"L": big["L"], "float64": big["N"] / big["ml64_step"],
                                   "float32": big["N"] / big["ml32_step"]}
    return out


def fmt(t):
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def markdown(rows, summaries, meta):
    lines = [f"Machine: {meta['cpu']} ({meta['cpu_count']} cores), {meta['threads']} torch threads, "
             f"load average {meta['load_start']:.1f} at start and {meta['load_end']:.1f} at end, {meta['date']}; "
             f"model weights: {meta['weights']}; KPM: {meta['moments']} moments, probing distance "
             f"{meta['distance']}, kT = 0.1; ED: kT = 0.", "",
             "| device | L | N | ML eval f64 | ML eval f32 | ML LLG step f64 | ML LLG step f32 | ns per site-step f32 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["reference"] is None:
            lines.append(f"| {r['device']} | {r['L']} | {r['N']} | {fmt(r['ml64_eval'])} | {fmt(r['ml32_eval'])} | "
                         f"{fmt(r['ml64_step'])} | {fmt(r['ml32_step'])} | {r['ml32_step'] / r['N'] * 1e9:.0f} |")
    lines += ["", "| device | L | reference | reference eval | ML f64 speedup | ML f32 speedup |", "|---|---|---|---|---|---|"]
    for device, s in summaries.items():
        for q in s["ratios"]:
            lines.append(f"| {device} | {q['L']} | {q['reference'].upper()} | {fmt(q['t_ref'])} | "
                         f"{q['speedup64']:.0f}× | {q['speedup32']:.0f}× |")
    for device, s in summaries.items():
        e = {k: ("n/a" if v is None else f"{v:.2f}") for k, v in s["exponents"].items()}
        lines += ["", f"Fitted exponents t ∝ N^p on {device}: ML eval f64 {e['ml64_eval']}, f32 {e['ml32_eval']}, "
                      f"ML LLG step f64 {e['ml64_step']}, f32 {e['ml32_step']} (32² … 512²); "
                      f"ED {e['ed']}; KPM {e['kpm']}."]
        if "site_steps_per_s" in s:
            q = s["site_steps_per_s"]
            lines.append(f"ML-LLG throughput at L = {q['L']} on {device}: {q['float64']:.3g} (f64), "
                         f"{q['float32']:.3g} (f32) site-steps per second.")
    if "cuda" not in summaries:
        lines += ["", "GPU: not measured (no GPU available); the script adds CUDA rows when one is."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ml-sizes", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    ap.add_argument("--gpu-sizes", type=int, nargs="+", default=[1024], help="extra ML sizes on a GPU")
    ap.add_argument("--ed-sizes", type=int, nargs="+", default=[12, 18, 24, 30, 48])
    ap.add_argument("--kpm-sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--moments", type=int, default=200)
    ap.add_argument("--distance", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3, help="rounds per size")
    ap.add_argument("--repeat-large", type=int, default=2, help="rounds for N >= 2^16, ED above L = 40, KPM above L = 100")
    ap.add_argument("--budget", type=float, default=1800.0, help="seconds per device")
    ap.add_argument("--out", default=str(HERE / "results_ml.md"))
    ap.add_argument("--json", default=str(HERE / "results_ml.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    rows, summaries, weights = [], {}, None
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        r, weights = sweep(device, args, time.perf_counter() + args.budget)
        rows += r
        summaries[device] = summary(rows, device)
    hw = hardware("cuda" if "cuda" in summaries else "cpu")
    meta = {**hw, "threads": torch.get_num_threads(), "load_start": load0, "load_end": os.getloadavg()[0],
            "date": str(date.today()), "weights": weights, "moments": args.moments, "distance": args.distance,
            "torch": torch.__version__}
    text = markdown(rows, summaries, meta)
    print(text)
    Path(args.out).write_text("# ML force field benchmark (`bench_ml.py`)\n\n" + text)
    Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows, "summary": summaries}, indent=1) + "\n")


if __name__ == "__main__":
    main()
