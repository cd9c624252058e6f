"""How far a solver's torques reach: swap sensitivity against R, and the linear torque response.

A Behler–Parrinello network of cutoff r_c can only represent torques T_i = S_i × H_i that are
functions of the spins near site i. Two measures of how local the torques of a force field are
(chapter 03 shows both):

* **Swap sensitivity** (nonlinear, on the data distribution): keep the spins within a distance R
  of a centre c, take every farther spin from another configuration S' (the same frame of another
  quench, say), and compare the torque on c,

      s(R) = sqrt( Σ |T_c(S with S' beyond R) − T_c(S)|² / Σ |T_c(S)|² ),

  the sums running over centres, frames and replacements. A force field whose torque at c is a
  function of the spins within R has s(R) = 0 exactly (a Behler–Parrinello energy of cutoff r_c:
  R = 2 r_c); s(R) estimates the error a model of range R must make on such configurations.
* **Linear response**: rms ‖∂T_i/∂θ_j‖ against the minimum-image distance |r_i − r_j|.

Any force field works (``ff(spins).fields``, any ensemble). A force field may also return several
ensembles from one evaluation, ``fields`` ``[B, K, N, 3]`` (:class:`ExactTemperatures`: one
diagonalisation, K electron temperatures); the results then carry a matching axis ``K``. Tensors
are created on the spins' device; configurations are evaluated in batches of ``chunk``.
"""
from __future__ import annotations

import torch

from .electrons.ed import ExactSolver, Levels
from .forcefield import ForceFieldOutput, _rotate, torque

__all__ = ["ExactTemperatures", "swapped", "swap_changes", "swap_sensitivity", "relative_rms", "cutoff_radius",
           "cutoff_sensitivity", "torque_response"]


class ExactTemperatures:
    """Exact grand-canonical Ω and fields at one chemical potential for several electron temperatures.

    One ``eigh`` per configuration serves every temperature: with f_k(ε) the Fermi function at
    ``kTs[k]`` (a step at kT = 0), Ω_k = Σ_n f_k (ε_n − μ) at kT = 0, −kT Σ_n ln(1 + e^{−(ε_n−μ)/kT})
    otherwise, and H_i = J Σ_n f_k(ε_n) ψ_n(i)† σ ψ_n(i) (``sdlib.electrons.ed``). Returns a
    :class:`~sdlib.forcefield.ForceFieldOutput` with ``energy`` ``[..., K]`` and ``fields``
    ``[..., K, N, 3]``. The model's own μ or filling is not used.
    """

    def __init__(self, solver: ExactSolver, mu: float, kTs):
        if not isinstance(solver, ExactSolver):
            raise ValueError(f"solver must be an ExactSolver, got {type(solver).__name__}")
        kTs = [float(k) for k in kTs]
        if not kTs or not all(0 <= k < float("inf") for k in kTs):
            raise ValueError(f"kTs must be a non-empty sequence of temperatures >= 0, got {kTs}")
        if not (isinstance(mu, (int, float)) and abs(mu) < float("inf")):
            raise ValueError(f"mu must be a finite number, got {mu!r}")
        self.solver, self.mu, self.kTs = solver, float(mu), kTs

    def __call__(self, spins: torch.Tensor) -> ForceFieldOutput:
        eps, vecs = self.solver.eigh(spins)
        dtype = spins.dtype if spins.is_floating_point() else torch.float64
        mu = torch.tensor(self.mu, dtype=torch.float64)
        outs = [Levels(eps, vecs, kT, self.solver.model.J, dtype).at(mu) for kT in self.kTs]
        dim = eps.dim() - 1  # the temperature axis goes after the batch axes
        return ForceFieldOutput(torch.stack([o.energy for o in outs], dim), torch.stack([o.fields for o in outs], dim))


def _check_sites(sites, n_sites: int, what: str) -> list[int]:
    sites = [int(c) for c in sites]
    if not sites or not all(0 <= c < n_sites for c in sites):
        raise ValueError(f"{what} must be site indices in [0, {n_sites}), got {sites}")
    return sites


def _check_radii(radii) -> list[float]:
    radii = [float(R) for R in radii]
    if not radii or min(radii) < 0:
        raise ValueError(f"radii must be distances >= 0, got {radii}")
    return radii


def _site_torques(ff, batch: torch.Tensor, sites: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """Torques ``[B, n, *E, 3]`` on sites ``sites[b]`` (``[B, n]``) of configurations ``batch`` ``[B, N, 3]``."""
    out, size = [], chunk or len(batch)
    for b, s in zip(torch.split(batch, size), torch.split(sites, size)):
        fields = ff(b).fields
        extra = fields.dim() - b.dim()
        if extra not in (0, 1) or fields.shape[0] != b.shape[0] or fields.shape[-2:] != b.shape[-2:]:
            raise ValueError(f"ff returned fields of shape {list(fields.shape)} for spins {list(b.shape)}: "
                             "expected [B, N, 3] or [B, K, N, 3] (K ensembles)")
        rows = torch.arange(len(b), device=b.device)[:, None]
        h = fields.movedim(-2, 1)[rows, s]  # [b, n, *E, 3]
        out.append(torque(b[rows, s].reshape(*s.shape, *(1,) * extra, 3).expand_as(h), h))
    return torch.cat(out)


def swapped(spins: torch.Tensor, lattice, centres, radii, replacement: torch.Tensor) -> torch.Tensor:
    """Configurations ``[..., n_c, n_R, M, N, 3]``: ``spins`` within R of each centre, ``replacement`` beyond.

    ``spins`` ``[..., N, 3]`` (leading axes: frames), ``replacement`` ``[..., M, N, 3]`` (M other
    configurations per frame, normalised to unit length); distances are minimum-image distances
    (``lattice.distances``); a spin at exactly R is kept.
    """
    N = lattice.n_sites
    if spins.shape[-2:] != (N, 3):
        raise ValueError(f"spins must have shape [..., {N}, 3], got {list(spins.shape)}")
    replacement = torch.as_tensor(replacement, dtype=spins.dtype, device=spins.device)
    if replacement.dim() != spins.dim() + 1 or replacement.shape[:-3] != spins.shape[:-2] \
            or replacement.shape[-2:] != spins.shape[-2:]:
        raise ValueError(f"replacement must have shape [..., M, {N}, 3] with the frames of spins "
                         f"{list(spins.shape[:-2])}, got {list(replacement.shape)}")
    radii = torch.tensor(_check_radii(radii), dtype=spins.dtype, device=spins.device)
    dist = lattice.distances(_check_sites(centres, N, "centres")).to(spins.device, spins.dtype)
    far = (dist[:, None, :] > radii[None, :, None])[:, :, None, :, None]  # [n_c, n_R, 1, N, 1]
    other = (replacement / replacement.norm(dim=-1, keepdim=True))[..., None, None, :, :, :]
    return torch.where(far, other, spins[..., None, None, None, :, :])


def swap_changes(ff, spins: torch.Tensor, lattice, centres, radii, replacement: torch.Tensor,
                 chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared torque changes of the swap, per sample: ``(changes, reference)``.

    ``changes`` ``[..., n_c, n_R, M, *E]`` = |T_c(swapped) − T_c(S)|², ``reference`` ``[..., n_c, *E]``
    = |T_c(S)|², for ``spins`` ``[..., N, 3]`` and ``replacement`` ``[..., M, N, 3]`` as in :func:`swapped`;
    ``E`` is ``(K,)`` for a force field that returns K ensembles, else empty. Cost: one evaluation
    of ``ff`` per frame and per (centre, R, replacement), in batches of ``chunk`` configurations.
    """
    batch = swapped(spins, lattice, centres, radii, replacement)
    lead, (n_c, n_R, M) = spins.shape[:-2], batch.shape[-5:-2]
    centres_t = torch.tensor([int(c) for c in centres], device=spins.device)
    frames = spins.reshape(-1, *spins.shape[-2:])
    t0 = _site_torques(ff, frames, centres_t.expand(len(frames), n_c), chunk)  # one evaluation per frame
    t0 = t0.reshape(*lead, n_c, 1, 1, *t0.shape[2:])  # [..., n_c, 1, 1, *E, 3]
    sites = centres_t[:, None, None].expand(n_c, n_R, M).reshape(-1).repeat(len(frames))
    t1 = _site_torques(ff, batch.reshape(-1, *spins.shape[-2:]), sites[:, None], chunk)[:, 0]
    t1 = t1.reshape(*lead, n_c, n_R, M, *t1.shape[1:])
    return (t1 - t0).pow(2).sum(-1), t0.pow(2).sum(-1).squeeze(len(lead) + 1).squeeze(len(lead) + 1)


def swap_sensitivity(ff, spins: torch.Tensor, lattice, centres, radii, replacement: torch.Tensor,
                     chunk: int | None = None) -> torch.Tensor:
    """Swap sensitivity s(R) ``[n_R, *E]`` over all frames, centres and replacements (module docstring)."""
    changes, reference = swap_changes(ff, spins, lattice, centres, radii, replacement, chunk)
    n_lead = spins.dim() - 2
    c = changes.reshape(-1, *changes.shape[n_lead + 1:])  # [frames x centres, n_R, M, *E]
    r = reference.reshape(-1, *reference.shape[n_lead + 1:])  # [frames x centres, *E]
    return (c.sum((0, 2)) / (c.shape[2] * r.sum(0))).sqrt()


def relative_rms(changes: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sqrt(Σ_s changes / Σ_s reference) over samples s (axis 0), and its jackknife standard error.

    ``changes`` ``[S, ...]`` (e.g. ``[S, n_R, K]``, each sample's |ΔT|² averaged over its
    replacements), ``reference`` ``[S, ...]`` broadcastable to it after the sample axis (``[S, 1, K]``).
    The error is the leave-one-sample-out jackknife, sqrt((S−1)/S Σ_s (v_(s) − v̄)²); NaN for S = 1.
    """
    changes, reference = torch.as_tensor(changes), torch.as_tensor(reference, dtype=torch.as_tensor(changes).dtype)
    if changes.dim() < 1 or len(changes) == 0 or reference.shape[:1] != changes.shape[:1]:
        raise ValueError(f"changes and reference must have the same number of samples on axis 0, got "
                         f"{list(changes.shape)} and {list(reference.shape)}")
    S = len(changes)
    num, den = changes.sum(0), reference.sum(0)
    value = (num / den).sqrt()
    if S == 1:
        return value, torch.full_like(value, float("nan"))
    loo = ((num - changes) / (den - reference)).sqrt()  # [S, ...]
    return value, ((S - 1) / S * (loo - loo.mean(0)).pow(2).sum(0)).sqrt()


def cutoff_radius(radii, sensitivity, threshold: float = 0.03) -> float | None:
    """The smallest R of ``radii`` (ascending) from which on ``sensitivity`` stays ≤ ``threshold``; None if none.

    A model of range R then misses at most ``threshold`` of the rms torque on the measured
    configurations (the cutoff rule of chapter 03).
    """
    radii, sensitivity = [float(R) for R in radii], [float(s) for s in sensitivity]
    if len(radii) != len(sensitivity) or not radii or radii != sorted(radii):
        raise ValueError(f"radii must be ascending and as many as the sensitivities, got {radii} and {sensitivity}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    best = None
    for R, s in zip(reversed(radii), reversed(sensitivity)):
        if s > threshold:
            break
        best = R
    return best


def cutoff_sensitivity(ff, spins: torch.Tensor, lattice, centres, radii, amplitude: float | None = 0.5,
                       n_samples: int = 2, seed: int = 0, replacement: torch.Tensor | None = None,
                       chunk: int | None = None) -> torch.Tensor:
    """Sensitivity ``[n_R, *E]`` of the torques on ``centres`` to the spins beyond R, for one configuration.

    With ``replacement`` ``[M, N, 3]`` this is :func:`swap_sensitivity` (the far spins taken from
    each of the M configurations). Otherwise every spin with |r_j − r_c| > R is perturbed,
    S_j → (S_j + a g_j)/|S_j + a g_j| with Gaussian g_j (``amplitude`` a; ``None`` draws them
    uniformly on the sphere instead), ``n_samples`` times per centre and radius (drawn on the CPU
    from ``seed``, so the same on every device). Cost: ``len(radii) · len(centres) · n_samples``
    evaluations of ``ff``.
    """
    if replacement is not None:
        replacement = torch.as_tensor(replacement, dtype=spins.dtype, device=spins.device)
        if replacement.dim() != 3 or replacement.shape[1:] != spins.shape:
            raise ValueError(f"replacement must have shape [M, {spins.shape[0]}, 3], got {list(replacement.shape)}")
        return swap_sensitivity(ff, spins, lattice, centres, radii, replacement, chunk)
    if amplitude is not None and not amplitude > 0:
        raise ValueError(f"amplitude must be > 0 (or None for uniform random spins), got {amplitude}")
    if not (isinstance(n_samples, int) and n_samples >= 1):
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    centres = _check_sites(centres, lattice.n_sites, "centres")
    radii = _check_radii(radii)
    N, n_c = lattice.n_sites, len(centres)
    centres_t = torch.tensor(centres, device=spins.device)
    dist = lattice.distances(centres).to(spins.device)
    t0 = _site_torques(ff, spins[None], centres_t[None], chunk)[0]  # [n_c, *E, 3]
    g = torch.Generator().manual_seed(seed)
    out = []
    for R in radii:  # one draw of noise [n_c, n_samples, N, 3] per radius, in this order
        noise = torch.randn((n_c, n_samples, *spins.shape), generator=g, dtype=torch.float64)
        noise = noise.to(spins.device, spins.dtype)
        moved = noise if amplitude is None else spins + amplitude * noise
        far = (dist > R)[:, None, :, None]
        batch = torch.where(far, moved / moved.norm(dim=-1, keepdim=True), spins).reshape(-1, N, 3)
        tc = _site_torques(ff, batch, centres_t.repeat_interleave(n_samples)[:, None], chunk)[:, 0]
        tc = tc.reshape(n_c, n_samples, *tc.shape[1:])
        out.append(((tc - t0[:, None]).pow(2).sum(-1).sum((0, 1)) / (n_samples * t0.pow(2).sum(-1).sum(0))).sqrt())
    return torch.stack(out)


def torque_response(ff, spins: torch.Tensor, lattice, sources, h: float = 1e-3):
    """How far the torque responds to one spin: rms ‖∂T_i/∂θ_j‖ against the distance |r_i − r_j|.

    Each source spin j is rotated by ±h about x, y and z in turn (|S_j| stays 1), and the central
    difference of the torques T_i = S_i × H_i of every site i gives ∂T_i/∂θ_j^a. Distances are
    minimum-image distances (``lattice.distances``). Returns ``(r, rms, share)``: the distinct
    distances ``[n_r]``, the root-mean-square response ``sqrt(⟨Σ_a |∂T_i/∂θ_j^a|²⟩)`` over all
    pairs (i, j) at that distance, and the cumulative share of Σ|∂T/∂θ|² up to that distance
    (share → 1 at the largest r). A force field whose energy is a sum of terms of range r_c has
    ``rms = 0`` beyond 2·r_c. Cost: 6 evaluations of ``ff`` per source, in one batch.
    """
    if not h > 0:
        raise ValueError(f"h must be > 0, got {h}")
    sources = _check_sites(sources, lattice.n_sites, "sources")
    eye = torch.eye(3, dtype=spins.dtype, device=spins.device)
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
    dist = lattice.distances(sources).to(resp.device, torch.float64).round(decimals=6)
    r, inv = torch.unique(dist.flatten(), return_inverse=True)
    total = torch.zeros(len(r), dtype=resp.dtype, device=resp.device).index_add_(0, inv, resp.flatten())
    count = torch.zeros(len(r), dtype=resp.dtype, device=resp.device).index_add_(0, inv, torch.ones_like(resp.flatten()))
    return r, (total / count).sqrt(), total.cumsum(0) / total.sum()
