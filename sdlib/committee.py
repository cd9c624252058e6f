"""A committee of force fields: their mean as the prediction, their spread as the uncertainty.

M networks trained on the same data with different seeds and splits agree where the data decide
the torques and disagree where they do not. With T_i^m = S_i × H_i^m the torque of member m at
site i, the committee predicts the mean and reports the per-site spread

    T̄_i = (1/M) Σ_m T_i^m,    σ_i = sqrt( (1/M) Σ_m |T_i^m − T̄_i|² )    (units of t),

a query-by-committee estimate of the error at each site (Seung, Opper, Sompolinsky, COLT 1992; as
in DP-GEN, Zhang et al., Comput. Phys. Commun. 253, 107206 (2020)). Its calibration against the
real error is a measurement, not a given (chapter 03). The mean energy and fields of the members
are again −∂Ē/∂S, so a committee is itself a ``ForceField`` and can drive the dynamics.

Shipped committees (``Committee.pretrained(name)``): member 0 is the shipped model
``sdlib/data/<name>``, members k ≥ 1 are ``sdlib/data/committee/<name>-<k>``, trained by the same
recipe on the same data and split with seed k (other initial weights and batch order;
``scripts/make_models.py train <name> --seed k``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .forcefield import ForceFieldOutput, torque

COMMITTEE_DIR = Path(__file__).resolve().parent / "data" / "committee"

__all__ = ["Committee", "calibration", "torque_spread_of"]


def torque_spread_of(spins: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
    """σ_i ``[..., N]`` (module docstring) from the members' fields ``[M, ..., N, 3]`` at ``spins``."""
    tq = torque(spins.expand_as(fields), fields)
    return (tq - tq.mean(0)).pow(2).sum(-1).mean(0).sqrt()


class Committee:
    """The mean of ``members`` (≥ 2 force fields on the same lattice) and their torque spread.

    ``committee(spins)`` → ``ForceFieldOutput`` (mean energy, fields, and N and μ where every
    member gives them); ``committee.evaluate(spins)`` → ``(output, spread)`` with the per-site
    spread σ_i ``[..., N]`` from the same evaluations; ``committee.spread(spins)`` → σ only.
    """

    def __init__(self, members):
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"members must hold at least 2 force fields, got {len(members)}")
        sizes = {getattr(m, "n_sites", None) for m in members}
        if len(sizes) != 1:
            raise ValueError(f"members must be built on one lattice, got n_sites {sorted(map(str, sizes))}")
        self.members, self.n_sites = members, sizes.pop()

    def __len__(self) -> int:
        return len(self.members)

    @classmethod
    def pretrained(cls, name: str, lattice=None, dtype: torch.dtype = torch.float64) -> "Committee":
        """The shipped committee of the shipped model ``name`` (module docstring), on ``lattice``
        (default the training lattice), evaluated in ``dtype``."""
        from .nn import MLForceField

        first = MLForceField.pretrained(name, lattice, dtype)  # checks the name
        stems = sorted(COMMITTEE_DIR.glob(f"{name}-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        if not stems:
            raise ValueError(f"no committee is shipped for {name!r} (sdlib/data/committee/{name}-<k>.json); "
                             f"train members with scripts/make_models.py train {name} --seed k")
        return cls([first] + [MLForceField.load(p.with_suffix(""), lattice, dtype) for p in stems])

    @staticmethod
    def shipped_names() -> list[str]:
        """Names of the shipped models that have a shipped committee."""
        return sorted({p.stem.rsplit("-", 1)[0] for p in COMMITTEE_DIR.glob("*-*.json")})

    def evaluate(self, spins: torch.Tensor) -> tuple[ForceFieldOutput, torch.Tensor]:
        outs = [m(spins) for m in self.members]
        fields = torch.stack([o.fields.to(spins.dtype) for o in outs])  # [M, ..., N, 3]
        spread = torque_spread_of(spins, fields)

        def mean(key):
            vals = [getattr(o, key) for o in outs]
            return None if any(v is None for v in vals) else torch.stack(vals).mean(0)

        return ForceFieldOutput(mean("energy"), fields.mean(0), mean("number"), mean("mu")), spread

    def __call__(self, spins: torch.Tensor) -> ForceFieldOutput:
        return self.evaluate(spins)[0]

    @torch.no_grad()
    def spread(self, spins: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """σ_i ``[..., N]``; frames ``[M, N, 3]`` are evaluated ``batch`` at a time (all at once by default)."""
        if batch is None or spins.dim() == 2:
            return self.evaluate(spins)[1]
        if not (isinstance(batch, int) and batch >= 1):
            raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
        return torch.cat([self.evaluate(spins[k:k + batch])[1] for k in range(0, spins.shape[0], batch)])


def calibration(spread, error, n_bins: int = 10) -> dict:
    """How well the committee spread predicts the real error: sites binned by spread.

    ``spread`` σ_i and ``error`` |T̄_i − T_i^ref| (any matching shapes, one value per site) are
    flattened; the sites are sorted by σ and cut into ``n_bins`` bins of equal count. Returns lists
    (one entry per bin, increasing σ): ``spread`` (rms σ in the bin), ``error`` (rms error in the
    bin), ``count``, and the scalars ``ratio`` = rms error / rms σ over all sites and ``rank_corr``,
    the Spearman rank correlation of σ and the error per site. A calibrated spread has
    error ≈ spread in every bin (points on the diagonal of chapter 03's figure); a spread that ranks
    the sites well but is too small by a constant factor has rank_corr near 1 and ratio > 1.
    Members that agree exactly (σ = 0 at every site) give ``ratio`` and ``rank_corr`` None: no spread,
    nothing to calibrate.
    """
    s = torch.as_tensor(spread, dtype=torch.float64).flatten()
    e = torch.as_tensor(error, dtype=torch.float64).flatten()
    if s.shape != e.shape:
        raise ValueError(f"spread and error must hold one value per site each, got {s.numel()} and {e.numel()}")
    if not (isinstance(n_bins, int) and 1 <= n_bins <= s.numel()):
        raise ValueError(f"n_bins must be an integer in [1, {s.numel()}] (the number of sites), got {n_bins!r}")
    if not (torch.isfinite(s).all() and torch.isfinite(e).all()) or (s < 0).any() or (e < 0).any():
        raise ValueError("spread and error must be finite and >= 0")
    order = torch.argsort(s)
    rms = lambda x: x.pow(2).mean().sqrt().item()
    bins = torch.tensor_split(order, n_bins)

    def ranks(x):
        r = torch.empty_like(x)
        r[torch.argsort(x)] = torch.arange(len(x), dtype=x.dtype)
        return r

    out = {"spread": [rms(s[b]) for b in bins], "error": [rms(e[b]) for b in bins], "count": [len(b) for b in bins],
           "ratio": None, "rank_corr": None}
    if rms(s) > 0:
        out["ratio"] = rms(e) / rms(s)
        out["rank_corr"] = torch.corrcoef(torch.stack([ranks(s), ranks(e)]))[0, 1].item()
    return out
