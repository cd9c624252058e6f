"""LLG integrator overhead per step, excluding the force field.

The force field returns precomputed fields (zero cost), so the timing is the integrator's own
work: noise, Ω = B + α S × B, Cayley or Heun updates, normalisation. Both methods, thermal noise
on, N = 10^4 and 10^6 spins; CUDA rows when a GPU is present.
Usage: ``python benchmarks/bench_llg.py [--steps 20]``.
"""
import argparse
import os
import platform
import time
from datetime import date

import torch

from sdlib import LLG, random_spins
from sdlib.forcefield import ForceFieldOutput


class Precomputed:
    def __init__(self, fields):
        self.out = ForceFieldOutput(torch.zeros((), dtype=fields.dtype, device=fields.device), fields)

    def __call__(self, spins):
        return self.out


def per_step(n, method, device, steps):
    s = random_spins(n, seed=0, device=device)
    llg = LLG(Precomputed(torch.randn_like(s)), dt=0.01, alpha=0.3, kT=0.1, method=method)
    out = llg._fields(s)
    s, out = llg.step(s, out)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        s, out = llg.step(s, out)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"machine {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, load {os.getloadavg()[0]:.1f}, {date.today()}")
    print("| device | N | method | time per step | ns per spin-step |")
    print("|---|---|---|---|---|")
    for device in devices:
        for n in (10**4, 10**6):
            for method in ("midpoint", "heun"):
                t = per_step(n, method, device, args.steps if n < 10**6 else max(3, args.steps // 5))
                print(f"| {device} | {n:.0e} | {method} | {t * 1e3:.2f} ms | {t / n * 1e9:.0f} |")


if __name__ == "__main__":
    main()
