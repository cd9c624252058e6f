"""The one interface every source of local fields implements, and a finite-difference wrapper.

A force field is any callable ``ff(spins) -> out`` with ``spins`` a tensor ``[N, 3]`` or
``[B, N, 3]`` and ``out.energy`` (``[]`` or ``[B]``) and ``out.fields`` (same shape as the spins)
where ``fields = -∂E/∂S`` is the gradient in R^3. Only the part perpendicular to each spin drives
the dynamics; the torque is ``S × H``. How far a force field's torques reach is measured by
``sdlib.locality``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

__all__ = ["ForceField", "ForceFieldOutput", "FiniteDifferenceFields", "torque", "perpendicular"]


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

