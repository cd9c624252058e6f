"""A site head whose electron number rises with μ by construction: a learned local density of states.

The exact grand potential of the electrons at temperature T_e (PHYSICS.md) is a sum over sites
through the local density of states ρ_i(ε) = Σ_n |ψ_n(i)|² δ(ε − ε_n), which holds 2 states per
site (spin) in the one-band s-d model:

    Ω = Σ_i Ω_i,   Ω_i(μ) = −T_e ∫ ρ_i(ε) ln(1 + e^{(μ−ε)/T_e}) dε,
    n_i = −∂Ω_i/∂μ = ∫ ρ_i(ε) f(ε − μ) dε,   ∂n_i/∂μ = ∫ ρ_i f(1 − f)/T_e dε > 0.

A site head ε(G, μ) that takes μ as a plain input of the MLP (``SiteEnergyNet(mu_input=True)``)
has no such guarantee: trained on labels in a window of μ, its N(μ) can fall, and then
N(μ) = N_e has several roots and μ* at fixed filling is not unique. This head instead models ρ_i
by K levels e_k(G_i) of weights w_k(G_i) ≥ 0 with Σ_k w_k = 2, plus an offset a(G_i) that does
not depend on μ:

    ω_i(μ) = a − T_e Σ_k w_k softplus((μ − e_k)/T_e),
    n_i(μ) = Σ_k w_k σ((μ − e_k)/T_e) ∈ (0, 2),      ∂n_i/∂μ = Σ_k w_k σ(1 − σ)/T_e > 0,

so N(μ) = Σ_i n_i rises strictly and N(μ) = N_e has exactly one root. The K levels stand in for
the spectrum each site sees; the offset a carries whatever the levels do not (it leaves N alone).

From the C = 1 + 2K outputs o of the MLP (channels last): a = s·o_0 + c (s, c: the network's
``energy_scale`` and ``energy_shift``), e_k = ē + W·o_k (ē, W: ``level_center``,
``level_width``; by default the centre and half-width of the model's spectrum,
|ε| ≤ z|t| + |J| for coordination z), w = 2 softmax(o_{K+1…2K}). Derivatives for the
hand-written backward (``sdlib.fastpath``), with σ_k = σ((μ − e_k)/T_e), g_k = −T_e softplus(·):

    ∂ω/∂o_0 = s,   ∂ω/∂o_k = W w_k σ_k,   ∂ω/∂o_{K+j} = w_j (g_j − Σ_k w_k g_k / 2).

Units of t throughout. Reference for the decomposition: the local density of states of a
tight-binding model, e.g. Haydock, Heine, Kelly, J. Phys. C 5, 2845 (1972).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["n_outputs", "spectrum_bound", "init_output_layer", "place_levels", "level_head", "level_number"]

STATES_PER_SITE = 2.0  # one orbital, two spin states: the local density of states integrates to 2
COORDINATION = {"square": 4, "triangular": 6}


def n_outputs(levels: int) -> int:
    """Width C = 1 + 2K of the MLP output of a head with K levels."""
    return 1 + 2 * levels


def spectrum_bound(kind: str, t: float, J: float) -> float:
    """Bound on the one-electron spectrum of the s-d model with unit spins: |ε| ≤ z|t| + |J|
    (hopping at most z|t| in magnitude, −J S·σ has eigenvalues ±J)."""
    if kind not in COORDINATION:
        raise ValueError(f"lattice kind must be one of {sorted(COORDINATION)}, got {kind!r}")
    return COORDINATION[kind] * abs(float(t)) + abs(float(J))


@torch.no_grad()
def init_output_layer(layer: nn.Linear, levels: int, spread: float = 0.1) -> None:
    """Start the levels spread evenly over the spectrum (biases of o_1…o_K from −1 to 1, i.e.
    e_k from ē − W to ē + W) with equal weights (biases of the logits 0), each only weakly
    dependent on the features (weights scaled by ``spread``)."""
    layer.weight[1:].mul_(spread)
    layer.bias[1:levels + 1] = torch.linspace(-1.0, 1.0, levels, dtype=layer.bias.dtype)
    layer.bias[levels + 1:] = 0.0


@torch.no_grad()
def place_levels(layer: nn.Linear, levels: int, mu: float, n: float, center: float, width: float) -> None:
    """Put the starting levels where the data say the electrons are: of the K equal-weight levels,
    round(K·n/2) evenly below ``mu`` and the rest evenly above it, over the spectrum
    [center − width, center + width], so that the untrained head already holds ≈ ``n`` electrons per
    site at ``mu`` (the labels' mean μ and electrons per site)."""
    below = min(levels - 1, max(1, round(levels * n / STATES_PER_SITE))) if levels > 1 else 1
    lo, hi = center - width, center + width
    mu = min(max(mu, lo + 1e-3 * width), hi - 1e-3 * width)
    k_lo = (torch.arange(below, dtype=torch.float64) + 0.5) / below
    k_hi = (torch.arange(levels - below, dtype=torch.float64) + 0.5) / max(levels - below, 1)
    e = torch.cat([mu - (mu - lo) * k_lo.flip(0), mu + (hi - mu) * k_hi])[:levels]
    layer.bias[1:levels + 1] = ((e - center) / width).to(layer.bias)


class _Softplus(torch.autograd.Function):
    """softplus(x) = ln(1 + eˣ) for any x in float32 and float64, with its slope σ(x) as the backward
    (itself differentiable, so training's double backward works). ``torch.logaddexp`` alone has the
    value right but its double backward overflows in float32 once x ≳ 88 (levels far below μ at
    T_e = 0.05), and ``nn.functional.softplus`` cuts over to x at x > 20 while its slope stays σ."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.logaddexp(x, torch.zeros_like(x))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x)


def _parts(o: torch.Tensor, levels: int, center, width):
    e = center + width * o[..., 1:levels + 1]
    w = STATES_PER_SITE * torch.softmax(o[..., levels + 1:], dim=-1)
    return e, w


def level_number(o: torch.Tensor, levels: int, center, width, kT):
    """``μ ↦ n_i(μ)`` ``[...]`` from the outputs ``o`` ``[..., C]`` (levels and weights computed once):
    what a solve for μ* evaluates many times. ``μ`` broadcasts against ``o.shape[:-1]``."""
    e, w = _parts(o, levels, center, width)

    def number(mu):
        return (w * torch.sigmoid((mu[..., None] - e) / kT)).sum(-1)

    return number


def level_head(o: torch.Tensor, mu, levels: int, scale, shift, center, width, kT, grad: bool = False):
    """Site grand potential ω ``[...]`` and site electrons n ``[...]`` of outputs ``o`` ``[..., C]`` at
    ``mu`` (broadcasting against ``o.shape[:-1]``); with ``grad=True`` also ∂ω/∂o ``[..., C]``
    (module docstring). Differentiable by autograd as well."""
    e, w = _parts(o, levels, center, width)
    x = (mu[..., None] - e) / kT
    g = -kT * _Softplus.apply(x)
    occ = torch.sigmoid(x)
    omega = scale * o[..., 0] + shift + (w * g).sum(-1)
    number = (w * occ).sum(-1)
    if not grad:
        return omega, number
    d = torch.empty_like(o)
    d[..., 0] = scale
    d[..., 1:levels + 1] = width * w * occ
    d[..., levels + 1:] = w * (g - (w * g).sum(-1, keepdim=True) / STATES_PER_SITE)
    return omega, number, d
