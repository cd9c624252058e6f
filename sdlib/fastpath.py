"""Inference without autograd: the energy and the fields −∂E/∂S of an ``MLForceField`` by a
hand-written backward pass.

Training needs the graph of the fields (double backward); inference needs only E and ∂E/∂S, and
autograd then stores every intermediate of the descriptor and the network for every site. Here
the forward pass keeps what the backward needs and nothing else, and everything after the
per-site tables is done in blocks of sites that fit the cache (on a GPU, blocks of ~10⁸ entries:
the memory of a lattice is its tables plus one block). A μ-input network keeps, between the
evaluations of its μ* solve, only the first layer's product z_1 − w_μ μ̃ (H numbers per site), not
the features.

Forward (site index last; ``Descriptor`` builds the tables):

    b_d(x)  = S_x · S_{x+d},              χ_t(x) = S_x · (S_{x+d1} × S_{x+d2})     (tables)
    v_k(i)  = table entry of variable k of the neighbourhood of i                  (gather)
    f^m_c(i) = Σ_k u^m_{ck} v_k(i)                                                 (irrep coefficients)
    G(i)    = [f^0_c (c ∈ A1 linear),  Σ_m f^m_{r_p} f^m_{s_p} (pairs p)]           (features)
    z_1 = W̃_1 G + b̃_1 (+ w_μ (μ − μ̄)/σ_μ),  h_l = φ(z_l),  ε = a (W_L h_{L−1} + b_L) + c (− n̄ μ)

with the feature standardisation folded into the first layer, W̃_1 = W_1 / std, b̃_1 = b_1 − W̃_1 mean.

Backward of E = Σ_i ε_i: δ_L = a, δz_l = (W_{l+1}^T δz_{l+1}) φ'(z_l), ∂E/∂G = W̃_1^T δz_1;
∂E/∂f^m_c = [c linear, m = 0] ∂E/∂G_c + Σ_p ∂E/∂G_p (δ_{c r_p} f^m_{s_p} + δ_{c s_p} f^m_{r_p});
∂E/∂v_k = Σ_{m,c} u^m_{ck} ∂E/∂f^m_c, scattered back onto the table entries; then

    ∂b_d(x)/∂S_x = S_{x+d},   ∂b_d(x)/∂S_{x+d} = S_x,
    ∂χ_t(x)/∂S_x = S_{x+d1} × S_{x+d2},  ∂χ_t/∂S_{x+d1} = S_{x+d2} × S_x,  ∂χ_t/∂S_{x+d2} = S_x × S_{x+d1}.

For a μ-input network N = −Σ_i ∂ε_i/∂μ = −Σ_i (w_μ · δz_1(i)) / σ_μ + n̄ N_sites from the same pass.
The result equals the autograd path to round-off (``tests/test_fastpath.py``).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["FastState", "BLOCK_ELEMENTS", "GPU_BLOCK_ELEMENTS"]

BLOCK_ELEMENTS = 1 << 18  # Gram entries × sites per block on the CPU (a block's intermediates stay in cache)
GPU_BLOCK_ELEMENTS = 1 << 27  # on a GPU: kernels stay large, a block's intermediates stay below ~1 GB


def _value_and_slope(layer: nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from .nn import _ACTIVATION_VALUE_AND_SLOPE  # (value, derivative · dz) of each activation

    if type(layer) not in _ACTIVATION_VALUE_AND_SLOPE:
        raise ValueError(f"no hand-written slope for activation {type(layer).__name__}")
    return _ACTIVATION_VALUE_AND_SLOPE[type(layer)](z, torch.ones((), dtype=z.dtype, device=z.device))


class FastState:
    """The descriptor tables of spins ``[B, N, 3]`` (one forward pass), from which
    :meth:`energy_fields` gives E, −∂E/∂S (and N for a μ-input network) at any μ."""

    def __init__(self, descriptor, spins: torch.Tensor):
        d = descriptor
        self.d, self.N = d, d.n_sites
        s = spins.transpose(-1, -2)  # [B, 3, N]
        self.s0 = s.unsqueeze(-2)  # [B, 3, 1, N]
        self.sh = s.index_select(-1, d.shift_index).unflatten(-1, (-1, self.N))  # [B, 3, n_shift, N]
        self.sb = self.sh.index_select(-2, d.bond_shift)
        self.sk, self.sl = self.sh.index_select(-2, d.tri_shift[:, 0]), self.sh.index_select(-2, d.tri_shift[:, 1])
        self.cr = torch.linalg.cross(self.sk, self.sl, dim=-3)
        bonds = (self.s0 * self.sb).sum(-3)
        chi = (self.s0 * self.cr).sum(-3)
        self.tables = torch.cat([bonds, chi], dim=-2).flatten(-2)  # [B, n_types · N]
        self.var_index = d.var_index.view(-1, self.N)  # [n_var, N]
        self.basis = d.basis_t  # [2, copy, n_var]
        self.n_lin = len(d.linear)
        self.n_pairs = len(d.pair_r)

    def _blocks(self):
        budget = BLOCK_ELEMENTS if self.tables.device.type == "cpu" else GPU_BLOCK_ELEMENTS
        step = max(32, budget // max(2 * self.n_pairs * self.tables.shape[0], 1))
        return [slice(a, min(a + step, self.N)) for a in range(0, self.N, step)]

    def _coefficients(self, blk: slice) -> torch.Tensor:
        v = self.tables.index_select(-1, self.var_index[:, blk].reshape(-1)).unflatten(-1, (-1, blk.stop - blk.start))
        return self.basis.unsqueeze(0) @ v.unsqueeze(1)  # [B, 2, copy, n_b]

    def _gathers(self, f: torch.Tensor):
        """The two copies of each Gram entry's coefficients, ``f[:, :, r_p]`` and ``f[:, :, s_p]``."""
        return f.index_select(-2, self.d.pair_r), f.index_select(-2, self.d.pair_s)

    def _features_of(self, f: torch.Tensor):
        """Features ``[B, F, n_b]`` of coefficients ``f``, and the gathered copies the backward reuses."""
        fr, fs = self._gathers(f)
        return torch.cat([f[:, 0].index_select(-2, self.d.linear), (fr * fs).sum(1)], dim=-2), fr, fs

    def first_layer(self, net) -> torch.Tensor:
        """``W̃_1 G + b̃_1`` ``[B, N, H]`` (the first layer without its μ input), block by block:
        what a μ-input network's N(μ) needs (``SiteEnergyNet.number_at_first_layer``)."""
        w1, b1 = _folded(net)
        z = [w1 @ self._features_of(self._coefficients(b))[0] + b1[:, None] for b in self._blocks()]
        return torch.cat(z, dim=-1).transpose(-1, -2)

    def energy_fields(self, net, mu: torch.Tensor | None = None, first: torch.Tensor | None = None):
        """``(E [B], fields [B, N, 3], N [B] or None)`` of the site-energy network ``net`` at ``mu``
        (``[B]``, μ-input networks only); ``first``: :meth:`first_layer` if already computed."""
        linears = [m for m in net.mlp if isinstance(m, nn.Linear)]
        acts = [m for m in net.mlp if not isinstance(m, nn.Linear)]
        F = net.n_features
        w1, b1 = _folded(net)
        extra = None
        if net.mu_input:
            w_mu = linears[0].weight[:, F]
            extra = (((mu - net.mu_mean) / net.mu_std)[:, None, None] * w_mu[:, None])  # [B, H, 1]
        B = self.tables.shape[0]
        energy = self.tables.new_zeros(B)
        number = self.tables.new_zeros(B) if net.mu_input else None
        dtab = torch.zeros_like(self.tables)
        for blk in self._blocks():
            f = self._coefficients(blk)
            if first is None:
                x, fr, fs = self._features_of(f)  # [B, F, n_b]
                z = w1 @ x + b1[:, None]
            else:
                fr, fs = self._gathers(f)
                z = first[:, blk].transpose(-1, -2)
            if extra is not None:
                z = z + extra
            slopes = []
            h = z
            for lin, act in zip(linears[1:], acts):
                a, sl = _value_and_slope(act, h)
                slopes.append(sl)
                h = lin.weight @ a + lin.bias[:, None]
            energy += net.energy_scale * h.sum((-1, -2)) + net.energy_shift * h.shape[-1]
            # backward: δ of the output is the scale for every site
            delta = (net.energy_scale * linears[-1].weight[0])[None, :, None] * slopes[-1]  # [B, H, n_b]
            for lin, sl in zip(reversed(linears[1:-1]), reversed(slopes[:-1])):
                delta = (lin.weight.T @ delta) * sl
            if number is not None:
                number -= (w_mu @ delta).sum(-1) / net.mu_std
            dx = w1.T @ delta  # [B, F, n_b]
            df = torch.zeros_like(f)
            df[:, 0].index_add_(-2, self.d.linear, dx[:, :self.n_lin])
            dq = dx[:, None, self.n_lin:]  # each Gram entry feeds both of its copies
            df.index_add_(-2, self.d.pair_r, dq * fs)
            df.index_add_(-2, self.d.pair_s, dq * fr)
            dv = (self.basis.transpose(-1, -2).unsqueeze(0) @ df).sum(1)  # [B, n_var, n_b]
            dtab.index_add_(-1, self.var_index[:, blk].reshape(-1), dv.flatten(-2))
        if net.mu_input:
            energy = energy - net.number_shift * mu * self.N
            number = number + net.number_shift * self.N
        return energy, self._spin_gradient(dtab).neg_(), number

    def _spin_gradient(self, dtab: torch.Tensor) -> torch.Tensor:
        """∂E/∂S ``[B, N, 3]`` from ∂E/∂(table entries) ``[B, n_types · N]``."""
        d = self.d
        dt = dtab.unflatten(-1, (-1, self.N))
        db, dc = dt[:, : len(d.bond_shift)].unsqueeze(1), dt[:, len(d.bond_shift):].unsqueeze(1)  # [B, 1, n, N]
        grad = (db * self.sb).sum(-2) + (dc * self.cr).sum(-2)  # the entries' own site x
        moved = torch.zeros_like(self.sh)  # contributions to the site x + d of shift d
        moved.index_add_(-2, d.bond_shift, db * self.s0)
        moved.index_add_(-2, d.tri_shift[:, 0], dc * torch.linalg.cross(self.sl, self.s0.expand_as(self.sl), dim=-3))
        moved.index_add_(-2, d.tri_shift[:, 1], dc * torch.linalg.cross(self.s0.expand_as(self.sk), self.sk, dim=-3))
        grad = grad.index_add(-1, d.shift_index, moved.flatten(-2))
        return grad.transpose(-1, -2)


def _folded(net) -> tuple[torch.Tensor, torch.Tensor]:
    """The first layer with the feature standardisation folded in: W̃_1 = W_1 / std, b̃_1 = b_1 − W̃_1 mean."""
    first = next(m for m in net.mlp if isinstance(m, nn.Linear))
    w1 = first.weight[:, :net.n_features] / net.feature_std
    return w1, first.bias - w1 @ net.feature_mean
