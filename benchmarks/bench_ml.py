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
over rounds), so it holds under load. Each call is timed by the wall clock and by the CPU clock of
the process (``time.process_time``), which does not count the time spent waiting for other
programs: with one thread it estimates the wall time on an idle machine. Power laws t = c·N^p are
fitted to each series. ``--merge`` adds the rows of earlier runs (e.g. one run for the slow ED
sizes, one for the rest); each row keeps its threads, load and date.
With a CUDA device the same measurements are repeated on it (ML up to L = 1024, where the LLG
throughput in site-steps per second is reported). Results: Markdown on stdout and in ``--out``,
the numbers in ``--json`` (read by book/06_performance).

Usage: ``python benchmarks/bench_ml.py [--threads 2] [--budget 1800]``. On a machine shared with
other work, run several threads with ``OMP_WAIT_POLICY=PASSIVE`` (recorded with the run): with the
default policy the OpenMP threads spin waiting for each other whenever one is descheduled, which
made a 30 × 30 network evaluation ten times slower on two busy cores.
"""
import argparse
import json
import math
import os
import statistics
import time
from collections import Counter
from datetime import date
from pathlib import Path

import torch

from sdlib import LLG, ExactSolver, KPMSolver, MLForceField, SDModel, lattice, random_spins
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
        s = random_spins(L * L, seed=0, dtype=dtype, device=device)
        calls[f"ml{name[-2:]}_eval"] = lambda ff=ff, s=s: ff(s)
        calls[f"ml{name[-2:]}_step"] = llg_stepper(ff, s)
    return calls, weights


def reference(kind, L, device, args):
    model = SDModel(lattice.square(L), t=1.0, J=6.0, filling=0.485, kT=0.0 if kind == "ed" else 0.1)
    ff = ExactSolver(model) if kind == "ed" else KPMSolver(model, n_moments=args.moments, probing=args.distance)
    s = random_spins(L * L, seed=0, device=device)
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
    times = interleaved(calls, repeat=args.repeat_large if slow else args.repeat, warmup=False, clock="both")
    med = {k: statistics.median(v["wall"]) for k, v in times.items()}
    return med | {f"{k}_cpu": statistics.median(v["cpu"]) for k, v in times.items()}, weights


def sweep(device, args, deadline, on_row):
    """Measure the planned sizes on ``device``; ``on_row(row)`` after each; returns the weights used."""
    weights = None
    plan = [(L, "ed") for L in args.ed_sizes] + [(L, "kpm") for L in args.kpm_sizes] + \
           [(L, None) for L in args.ml_sizes + (args.gpu_sizes if device == "cuda" else [])]
    last = {}
    for L, ref in plan:
        key = ref or "ml"
        if key in last:  # skip sizes whose projected time (one round, scaled) no longer fits the budget
            L0, t0 = last[key]
            p = {"ed": 3.0, "kpm": 1.2, "ml": 1.1}[key]
            if time.perf_counter() + t0 * (L / L0) ** (2 * p) > deadline:
                print(f"  skipped {key} L={L} on {device}: over the time budget", flush=True)
                continue
        t_start, load = time.perf_counter(), os.getloadavg()[0]
        med, weights = measure(L, device, args, ref)
        last[key] = (L, sum(v for k, v in med.items() if not k.endswith("_cpu")))
        on_row({"device": device, "L": L, "N": L * L, "reference": ref, **med, "threads": torch.get_num_threads(),
                "load": round((load + os.getloadavg()[0]) / 2, 1), "date": str(date.today())})
        print(f"  {device} L={L} {ref or ''} " + " ".join(f"{k}={v:.4g}s" for k, v in med.items()), flush=True)
    return weights


def exponent(rows, key, n_min=0, n_max=math.inf):
    pts = {r["N"]: r[key] for r in rows if key in r and n_min <= r["N"] <= n_max}
    if len(pts) < 3:
        return None
    return growth_exponent(list(pts), list(pts.values()))[0]


def summary(rows, device):
    """Exponents and speedups from the wall clock and, on the CPU, from the CPU clock."""
    rs = [r for r in rows if r["device"] == device]
    clocks = ("", "_cpu") if device == "cpu" else ("",)
    threads = Counter(r["threads"] for r in rs).most_common(1)[0][0]  # exponents: one thread count
    fit = [r for r in rs if r["threads"] == threads]
    out = {"exponents": {"threads": threads}, "ratios": []}
    for c in clocks:
        for key in ("ml64_eval", "ml32_eval", "ml64_step", "ml32_step"):
            out["exponents"][key + c] = exponent([r for r in fit if r["reference"] is None], key + c, 32 ** 2, 512 ** 2)
        for ref in ("ed", "kpm"):
            out["exponents"][ref + c] = exponent([r for r in fit if r["reference"] == ref], ref + c)
    for r in rs:
        if r["reference"]:
            ref = r["reference"]
            q = {"L": r["L"], "reference": ref, "threads": r["threads"], "load": r["load"], "date": r["date"]}
            for c in clocks:
                q |= {"t_ref" + c: r[ref + c], "speedup64" + c: r[ref + c] / r["ml64_eval" + c],
                      "speedup32" + c: r[ref + c] / r["ml32_eval" + c]}
            out["ratios"].append(q)
    big = max((r for r in rs if r["reference"] is None), key=lambda r: r["N"], default=None)
    if big:  # wall clock, and on the CPU also the CPU clock
        out["site_steps_per_s"] = {"L": big["L"], "float64": big["N"] / big["ml64_step"],
                                   "float32": big["N"] / big["ml32_step"]}
        if device == "cpu":
            out["site_steps_per_s"] |= {"float64_cpu": big["N"] / big["ml64_step_cpu"],
                                        "float32_cpu": big["N"] / big["ml32_step_cpu"]}
    return out


def fmt(t):
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def markdown(rows, summaries, runs):
    lines = [f"Run {k + 1}: {m['cpu']} ({m['cpu_count']} cores), torch threads: {m['threads']}, "
             f"OMP_WAIT_POLICY {m.get('omp_wait_policy', 'default')}, load average "
             f"{m['load_start']:.1f} at start and {m['load_end']:.1f} at end, {m['date']}, torch {m['torch']}; "
             f"model weights: {m['weights']}; KPM: {m['moments']} moments, probing distance {m['distance']}, "
             f"kT = 0.1; ED: kT = 0." for k, m in enumerate(runs)]
    lines += ["", "Wall time (CPU time of the process in parentheses, CPU rows only):", "",
              "| device | L | N | ML eval f64 | ML eval f32 | ML LLG step f64 | ML LLG step f32 | "
              "ns per site-step f32 (CPU clock on cpu) | threads, load | date |", "|---|---|---|---|---|---|---|---|---|---|"]

    def step32(r):
        return "ml32_step_cpu" if r["device"] == "cpu" else "ml32_step"

    def both(r, key):
        return fmt(r[key]) + (f" ({fmt(r[key + '_cpu'])})" if r["device"] == "cpu" else "")
    for r in rows:
        if r["reference"] is None:
            lines.append(f"| {r['device']} | {r['L']} | {r['N']} | {both(r, 'ml64_eval')} | {both(r, 'ml32_eval')} | "
                         f"{both(r, 'ml64_step')} | {both(r, 'ml32_step')} | {r[step32(r)] / r['N'] * 1e9:.0f} | "
                         f"{r['threads']}, {r['load']} | {r['date']} |")
    lines += ["", "Speedup of one field evaluation, wall clock (CPU clock in parentheses):", "",
              "| device | L | reference | reference eval | ML f64 speedup | ML f32 speedup | threads, load | date |",
              "|---|---|---|---|---|---|---|---|"]
    for device, s in summaries.items():
        for q in s["ratios"]:
            cpu = device == "cpu"
            t = fmt(q["t_ref"]) + (f" ({fmt(q['t_ref_cpu'])})" if cpu else "")
            s64 = f"{q['speedup64']:.0f}×" + (f" ({q['speedup64_cpu']:.0f}×)" if cpu else "")
            s32 = f"{q['speedup32']:.0f}×" + (f" ({q['speedup32_cpu']:.0f}×)" if cpu else "")
            lines.append(f"| {device} | {q['L']} | {q['reference'].upper()} | {t} | {s64} | {s32} | "
                         f"{q['threads']}, {q['load']} | {q['date']} |")
    for device, s in summaries.items():
        for c, clock in (("", "wall clock"), ("_cpu", "CPU clock")):
            if c and device != "cpu":
                continue
            e = {k: ("n/a" if v is None else f"{v:.2f}") for k, v in s["exponents"].items() if k != "threads"}
            sizes = sorted(r["L"] for r in rows if r["device"] == device and r["reference"] is None) or ["?"]
            lines += ["", f"Fitted exponents t ∝ N^p on {device}, {clock}, rows with {s['exponents']['threads']} thread(s): "
                          f"ML eval f64 {e['ml64_eval' + c]}, "
                          f"f32 {e['ml32_eval' + c]}, ML LLG step f64 {e['ml64_step' + c]}, f32 {e['ml32_step' + c]} "
                          f"({sizes[0]}² … {sizes[-1]}²); ED {e['ed' + c]}; KPM {e['kpm' + c]}."]
        if "site_steps_per_s" in s:
            q = s["site_steps_per_s"]
            lines.append(f"ML-LLG throughput at L = {q['L']} on {device}, wall clock: {q['float64']:.3g} (f64), "
                         f"{q['float32']:.3g} (f32) site-steps per second"
                         + (f"; CPU clock: {q['float64_cpu']:.3g} (f64), {q['float32_cpu']:.3g} (f32)."
                            if "float64_cpu" in q else "."))
    if "cuda" not in summaries:
        lines += ["", "GPU: not measured (no GPU available); the script adds CUDA rows when one is."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ml-sizes", type=int, nargs="*", default=[32, 64, 128, 256, 512])
    ap.add_argument("--gpu-sizes", type=int, nargs="*", default=[1024], help="extra ML sizes on a GPU")
    ap.add_argument("--ed-sizes", type=int, nargs="*", default=[12, 18, 24, 30, 48])
    ap.add_argument("--kpm-sizes", type=int, nargs="*", default=[32, 64, 128])
    ap.add_argument("--moments", type=int, default=200)
    ap.add_argument("--distance", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3, help="rounds per size")
    ap.add_argument("--repeat-large", type=int, default=2, help="rounds for N >= 2^16, ED above L = 40, KPM above L = 100")
    ap.add_argument("--budget", type=float, default=1800.0, help="seconds per device")
    ap.add_argument("--out", default=str(HERE / "results_ml.md"))
    ap.add_argument("--json", default=str(HERE / "results_ml.json"))
    ap.add_argument("--merge", nargs="*", default=[], help="JSON files of earlier runs to include")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows, runs = [], []
    for path in args.merge:  # earlier runs: their rows are kept unless this run measures the same ones
        prev = json.loads(Path(path).read_text())
        rows, runs = rows + prev["rows"], runs + prev["runs"]
    meta = {**hardware("cuda" if torch.cuda.is_available() else "cpu"), "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "load_start": os.getloadavg()[0], "date": str(date.today()), "moments": args.moments,
            "distance": args.distance, "torch": torch.__version__}
    if args.ed_sizes or args.kpm_sizes or args.ml_sizes:  # otherwise only the merged runs are summarised
        runs.append(meta)

    def write(row=None):
        nonlocal rows
        if row is not None:
            key = lambda r: (r["device"], r["L"], r["reference"], r["threads"])
            rows = [r for r in rows if key(r) != key(row)] + [row]
        meta["load_end"] = os.getloadavg()[0]
        summaries = {d: summary(rows, d) for d in dict.fromkeys(r["device"] for r in rows)}
        text = markdown(rows, summaries, runs)
        Path(args.out).write_text("# ML force field benchmark (`bench_ml.py`)\n\n" + text)
        Path(args.json).write_text(json.dumps({"runs": runs, "rows": rows, "summary": summaries}, indent=1) + "\n")
        return text

    meta["weights"] = make_ml(8, torch.float64, "cpu")[1]
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        sweep(device, args, time.perf_counter() + args.budget, write)
    print(write())

if __name__ == "__main__":
    main()
