"""The one interface every source of local fields implements, and a finite-difference wrapper.

A force field is any callable ``ff(spins) -> out`` with ``spins`` a tensor ``[N, 3]`` or
``[B, N, 3]`` and ``out.energy`` (``[]`` or ``[B]``) and ``out.fields`` (same shape as the spins)
where ``fields = -∂E/∂S`` is the gradient in R^3. Only the part perpendicular to each spin drives
the dynamics; the torque is ``S × H``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

__all__ = ["ForceField", "ForceFieldOutput", "FiniteDifferenceFields", "torque", "perpendicular", "torque_response",
           "cutoff_sensitivity"]


@dataclass
class ForceFieldOutput:
    """Result of a force-field evaluation.

    energy : ``[]`` or ``[B]`` — Ω at fixed μ, E (or free energy at kT > 0) at fixed filling.
    fields : ``[N, 3]`` or ``[B, N, 3]`` — local exchange fields H_i = -∂E/∂S_i.
    number : ``[]`` or ``[B]`` — electron number N = -∂Ω/∂μ, where the solver knows it (else None).
    mu : ``[]`` or ``[B]`` (float64) — the chemical potential of the result (given, or μ* solved
        at fixed filling; ``sdlib.ensemble``), where the solver knows it (else None).
    """

    energy: torch.Tensor
    fields: torch.Tensor
    number: torch.Tensor | None = None
    mu: torch.Tensor | None = None


@runtime_checkable
class ForceField(Protocol):
    """Anything that maps spins to a :class:`ForceFieldOutput`."""

    def __call__(self, spins: torch.Tensor) -> ForceFieldOutput: ...


def torque(spins: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
    """Torque ``T_i = S_i × H_i``."""
    return torch.linalg.cross(spins, fields, dim=-1)


def perpendicular(spins: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
    """Part of ``fields`` perpendicular to unit spins: ``H - (H·S) S``."""
    return fields - (fields * spins).sum(-1, keepdim=True) * spins


def _rotate(spins: torch.Tensor, axis: torch.Tensor, angle: float) -> torch.Tensor:
    """Rodrigues rotation of every spin about a fixed unit axis by ``angle``."""
    c, s = torch.cos(torch.tensor(angle, dtype=spins.dtype)), torch.sin(torch.tensor(angle, dtype=spins.dtype))
    axis = axis.to(spins)
    cross = torch.linalg.cross(axis.expand_as(spins), spins, dim=-1)
    return spins * c + cross * s + axis * (spins @ axis)[..., None] * (1 - c)


class FiniteDifferenceFields:
    """Fields of a force field from central finite differences of its energy (for tests).

    ``mode="rotation"`` (default) rotates one spin at a time about x, y, z by ±h, which keeps
    |S_i| = 1 and gives the torque exactly: dE/dθ_a = -(S_i × H_i)_a. The returned ``fields`` are
    then the perpendicular part ``T × S``. ``mode="cartesian"`` moves S_i^a by ±h (the wrapped
    force field must accept non-unit spins) and returns the full R^3 gradient.
    Cost: 6N energy evaluations, batched in chunks of ``chunk``.
    """

    def __init__(self, ff, h: float = 1e-5, mode: str = "rotation", chunk: int = 64):
        if mode not in ("rotation", "cartesian"):
            raise ValueError(f"mode must be 'rotation' or 'cartesian', got {mode!r}")
        if not h > 0:
            raise ValueError(f"h must be > 0, got {h}")
        self.ff, self.h, self.mode, self.chunk = ff, float(h), mode, int(chunk)

    def _displaced(self, spins: torch.Tensor, sign: float) -> torch.Tensor:
        N = spins.shape[0]
        out = spins.expand(3 * N, N, 3).clone()
        eye = torch.eye(3, dtype=spins.dtype, device=spins.device)
        for a in range(3):
            rows = torch.arange(N) * 3 + a
            if self.mode == "rotation":
                out[rows, torch.arange(N)] = _rotate(spins, eye[a], sign * self.h)
            else:
                out[rows, torch.arange(N)] = spins + sign * self.h * eye[a]
        return out

    def _energies(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.ff(b).energy.reshape(-1) for b in torch.split(batch, self.chunk)])

    def __call__(self, spins: torch.Tensor) -> ForceFieldOutput:
        if spins.dim() == 3:
            outs = [self(s) for s in spins]
            return ForceFieldOutput(torch.stack([o.energy for o in outs]), torch.stack([o.fields for o in outs]))
        N = spins.shape[0]
        dE = (self._energies(self._displaced(spins, +1)) - self._energies(self._displaced(spins, -1))) / (2 * self.h)
        dE = dE.reshape(N, 3)
        if self.mode == "cartesian":
            fields = -dE
        else:
            tq = -dE  # torque S × H
            fields = torch.linalg.cross(tq, spins, dim=-1)  # (S × H) × S = H_perp for |S| = 1
        return ForceFieldOutput(self.ff(spins).energy, fields)


def torque_response(ff, spins: torch.Tensor, lattice, sources, h: float = 1e-3):
    """How far the torque responds to one spin: rms ‖∂T_i/∂θ_j‖ against the distance |r_i − r_j|.

    Each source spin j is rotated by ±h about x, y and z in turn (|S_j| stays 1), and the central
    difference of the torques T_i = S_i × H_i of every site i gives ∂T_i/∂θ_j^a. Distances are
    minimum-image distances on the periodic lattice. Returns ``(r, rms, share)``: the distinct
    distances ``[n_r]``, the root-mean-square response ``sqrt(⟨Σ_a |∂T_i/∂θ_j^a|²⟩)`` over all
    pairs (i, j) at that distance, and the cumulative share of Σ|∂T/∂θ|² up to that distance
    (share → 1 at the largest r). A force field whose energy is a sum of terms of range r_c has
    ``rms = 0`` beyond 2·r_c; a share close to 1 at r_c means a model of range r_c can represent
    the fields. Cost: 6 evaluations of ``ff`` per source.
    """
    if not h > 0:
        raise ValueError(f"h must be > 0, got {h}")
    sources = [int(j) for j in sources]
    if not sources or not all(0 <= j < lattice.n_sites for j in sources):
        raise ValueError(f"sources must be site indices in [0, {lattice.n_sites}), got {sources}")
    eye = torch.eye(3, dtype=spins.dtype)
    batch = []
    for j in sources:
        for a in range(3):
            for sign in (1.0, -1.0):
                s = spins.clone()
                s[j] = _rotate(spins[j:j + 1], eye[a], sign * h)[0]
                batch.append(s)
    batch = torch.stack(batch)
    dT = torque(batch, ff(batch).fields).reshape(len(sources), 3, 2, lattice.n_sites, 3)
    resp = ((dT[:, :, 0] - dT[:, :, 1]) / (2 * h)).pow(2).sum((1, -1))  # [n_src, N]
    dist = _distances(lattice, sources).round(decimals=6)
    r, inv = torch.unique(dist.flatten(), return_inverse=True)
    total = torch.zeros(len(r), dtype=resp.dtype).index_add_(0, inv, resp.flatten())
    count = torch.zeros(len(r), dtype=resp.dtype).index_add_(0, inv, torch.ones_like(resp.flatten()))
    return r, (total / count).sqrt(), total.cumsum(0) / total.sum()


def _distances(lattice, sites) -> torch.Tensor:
    """``[len(sites), N]`` minimum-image distances from each of ``sites`` to every site."""
    from .analysis import _r_norms

    c, rn = lattice.coords, _r_norms(lattice)
    return torch.stack([rn[(c[:, 1] - c[j, 1]) % lattice.L, (c[:, 0] - c[j, 0]) % lattice.L] for j in sites])


def cutoff_sensitivity(ff, spins: torch.Tensor, lattice, centres, radii, amplitude: float | None = 0.5,
                       n_samples: int = 2, seed: int = 0, replacement: torch.Tensor | None = None) -> torch.Tensor:
    """How much of the torque at a site is decided by spins farther away than R (a nonlinear locality probe).

    For each centre c and radius R, every spin with |r_j − r_c| > R is perturbed,
    S_j → (S_j + a·g_j)/|S_j + a·g_j| with Gaussian g_j (``amplitude`` a; ``None`` draws them
    uniformly on the sphere instead), ``n_samples`` times, and the torque T_c = S_c × H_c is
    recomputed. With ``replacement`` (``[M, N, 3]`` other configurations, e.g. frames of other
    trajectories) the far spins are taken from each of them instead (``n_samples = M``): the
    question "does the neighbourhood decide the torque?" asked on the data distribution itself.
    Returns ``[len(radii)]``: sqrt(Σ|T_c' − T_c|² / Σ|T_c|²) over centres and samples.

    A model whose torque at c is a function of the spins within R has sensitivity 0 at that R
    (a Behler–Parrinello energy of cutoff r_c: R = 2 r_c). Conversely, this number estimates the
    error a model of range R must make on configurations that differ beyond R as the perturbed
    ones do (an estimate, not a bound: the perturbed states need not be typical of the data).
    Cost: ``len(radii) · len(centres) · n_samples`` evaluations of ``ff``, batched per radius.
    """
    if replacement is not None:
        replacement = torch.as_tensor(replacement, dtype=spins.dtype)
        if replacement.dim() != 3 or replacement.shape[1:] != spins.shape:
            raise ValueError(f"replacement must have shape [M, {spins.shape[0]}, 3], got {list(replacement.shape)}")
        n_samples = replacement.shape[0]
    if amplitude is not None and not amplitude > 0:
        raise ValueError(f"amplitude must be > 0 (or None for uniform random spins), got {amplitude}")
    if not (isinstance(n_samples, int) and n_samples >= 1):
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    centres = [int(c) for c in centres]
    if not centres or not all(0 <= c < lattice.n_sites for c in centres):
        raise ValueError(f"centres must be site indices in [0, {lattice.n_sites}), got {centres}")
    radii = [float(R) for R in radii]
    if not radii or min(radii) < 0:
        raise ValueError(f"radii must be distances >= 0, got {radii}")
    g = torch.Generator().manual_seed(seed)
    t0 = torque(spins, ff(spins).fields)[centres]  # [n_c, 3]
    dist = _distances(lattice, centres)
    out = []
    for R in radii:
        batch = spins.expand(len(centres), n_samples, *spins.shape).clone()
        if replacement is not None:
            moved = replacement.expand_as(batch)
        else:
            noise = torch.randn(batch.shape, generator=g, dtype=spins.dtype)
            moved = noise if amplitude is None else batch + amplitude * noise
        far = (dist > R)[:, None, :, None]
        batch = torch.where(far, moved / moved.norm(dim=-1, keepdim=True), batch).reshape(-1, *spins.shape)
        tc = torque(batch, ff(batch).fields).reshape(len(centres), n_samples, -1, 3)
        tc = tc[torch.arange(len(centres)), :, centres]  # [n_c, n_samples, 3]
        out.append(((tc - t0[:, None]).pow(2).sum() / (n_samples * t0.pow(2).sum())).sqrt())
    return torch.stack(out)
