"""Inference without autograd: the energy and the fields −∂E/∂S of an ``MLForceField`` by a
hand-written backward pass.

Training needs the graph of the fields (double backward); inference needs only E and ∂E/∂S, and
autograd then stores every intermediate of the descriptor and the network for every site. Here
the forward pass keeps what the backward needs and nothing else, and everything after the
per-site tables is done configuration by configuration in blocks of sites that fit the cache (on a
GPU, blocks of ~10⁸ entries: the memory of a lattice is its tables plus one block). A μ-input
network keeps, between the evaluations of its μ* solve, only the first layer's product
z_1 − w_μ μ̃ (H numbers per site), not the features.

Forward (site index last; ``Descriptor`` builds the tables):

    b_d(x)  = S_x · S_{x+d},              χ_t(x) = S_x · (S_{x+d1} × S_{x+d2})     (tables)
    v_k(i)  = table entry of variable k of the neighbourhood of i                  (gather)
    f_o(i)  = U_o v_o(i)                                                          (irrep coefficients)
    x_j(i)  = Σ_{t → j} f_{a_t}(i) f_{b_t}(i)                                      (features)
    z_1 = W̃_1 x + b̃_1 (+ w_μ (μ − μ̄)/σ_μ),  h_l = φ(z_l),  ε = a (W_L h_{L−1} + b_L) + c (− n̄ μ)

The variables are taken orbit by orbit of the point group: the copies of the irreps found in an
orbit o span exactly its variables v_o, so the coefficients f^m_r (copy r, partner m) of all its
copies are one small orthogonal matrix U_o = [u^m_r] times v_o — a batched product of the orbits of
one size instead of a dense basis that is mostly zeros. Each feature is a sum of products of two
coefficient rows (terms t): a linear feature f^0_c is f^0_c · 1 (a row of ones is appended), a Gram
entry Σ_m f^m_r f^m_s has one term per partner m (its m = 0 term at its own place, the others
added afterwards). With the feature standardisation folded into the first layer,
W̃_1 = W_1 / std, b̃_1 = b_1 − W̃_1 mean.

Backward of E = Σ_i ε_i: δ_L = a, δz_l = (W_{l+1}^T δz_{l+1}) φ'(z_l), ∂E/∂x = W̃_1^T δz_1;
each term t passes ∂E/∂x_j (j its feature) on as ∂E/∂f_{a_t} += ∂E/∂x_j f_{b_t} and
∂E/∂f_{b_t} += ∂E/∂x_j f_{a_t}; ∂E/∂v_o = U_o^T ∂E/∂f_o, scattered back onto the table entries; then

    ∂b_d(x)/∂S_x = S_{x+d},   ∂b_d(x)/∂S_{x+d} = S_x,
    ∂χ_t(x)/∂S_x = S_{x+d1} × S_{x+d2},  ∂χ_t/∂S_{x+d1} = S_{x+d2} × S_x,  ∂χ_t/∂S_{x+d2} = S_x × S_{x+d1}.

For a μ-input network N = −Σ_i ∂ε_i/∂μ = −Σ_i (w_μ · δz_1(i)) / σ_μ + n̄ N_sites from the same pass.
A level head (``sdlib.levelhead``) has C = 1 + 2K outputs o = W_L h_{L−1} + b_L instead of one:
its ω_i, n_i and ∂ω_i/∂o come in closed form, and δ_{L−1} = W_L^T ∂ω/∂o.
The result equals the autograd path to round-off (``tests/test_fastpath.py``).
"""
from __future__ import annotations

import weakref

import numpy as np
import torch
from torch import nn

__all__ = ["FastState", "BLOCK_ELEMENTS", "GPU_BLOCK_ELEMENTS"]

BLOCK_ELEMENTS = 1 << 18  # products of coefficients (terms × sites) per block on the CPU: a block stays in cache
GPU_BLOCK_ELEMENTS = 1 << 27  # on a GPU: kernels stay large, a block's intermediates stay below ~1 GB


def _value_and_slope(layer: nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from .nn import _ACTIVATION_VALUE_AND_SLOPE  # (value, derivative · dz) of each activation

    if type(layer) not in _ACTIVATION_VALUE_AND_SLOPE:
        raise ValueError(f"no hand-written slope for activation {type(layer).__name__}")
    return _ACTIVATION_VALUE_AND_SLOPE[type(layer)](z, 1.0)


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a × b`` over dim −3 (broadcasting); componentwise, several times faster than linalg.cross here."""
    a0, a1, a2 = a.unbind(-3)
    b0, b1, b2 = b.unbind(-3)
    return torch.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], dim=-3)


class _Layout:
    """The descriptor's coefficients and features rewritten for the fast path (module docstring):
    ``var_index [n_var, N]`` the table entry of each variable, orbit by orbit; ``groups`` of orbits
    of one shape, ``(U [n_orbits, n_coef, n_var], U^T, variable rows, coefficient rows)``; the
    terms ``a``, ``b`` (rows of the coefficients, the last row the ones) of the features, the first
    ``n_features`` of them one per feature in the network's order, the rest (second partners)
    added to the features ``tail``."""

    def __init__(self, d):
        copies, orbits = d.copies, d.neighborhood.orbits
        shapes: dict = {}  # orbits grouped by (n_coef, n_var), each with its (copy, partner) rows
        for o, orb in enumerate(orbits):
            rows = [(r, m) for r, c in enumerate(copies) if c.orbit == o for m in range(c.dim)]
            shapes.setdefault((len(rows), len(orb)), []).append((o, rows))
        order, row, groups, n_var = [], {}, [], 0
        for (nc, nv), members in shapes.items():
            u = np.stack([[copies[r].vectors[m, orbits[o]] for r, m in rows] for o, rows in members])
            for o, rows in members:
                order.extend(orbits[o])
                row.update((rm, len(row)) for rm in rows)
            u = torch.from_numpy(u).to(d.basis_t)
            groups.append((u, u.transpose(-1, -2).contiguous(), slice(n_var, n_var + nv * len(members)),
                           slice(len(row) - nc * len(members), len(row))))
            n_var += nv * len(members)
        one = len(row)
        pairs = list(zip(d.pair_r.tolist(), d.pair_s.tolist()))
        a = [row[r, 0] for r in d.linear.tolist()] + [row[r, 0] for r, _ in pairs]
        b = [one] * len(d.linear) + [row[s, 0] for _, s in pairs]
        extra = [(len(d.linear) + j, row[r, m], row[s, m]) for j, (r, s) in enumerate(pairs)
                 for m in range(1, copies[r].dim)]
        # the second partners belong to the Gram entries of the 2-d irreps, the last ones (irreps in order)
        self.tail = slice(len(a) - len(extra), len(a))
        if [e[0] for e in extra] != list(range(len(a)))[self.tail]:
            raise ValueError("the fast path needs one second partner per Gram entry of the last irreps "
                             "(irreps of dimension ≤ 2, ordered by dimension); use ff.fast = False")
        self.groups, self.n_coef, self.n_features = groups, one + 1, len(a)
        self.var_index = d.var_index.view(-1, d.n_sites)[torch.tensor(order, device=d.var_index.device)]
        self.a = torch.tensor(a + [e[1] for e in extra], device=d.var_index.device)
        self.b = torch.tensor(b + [e[2] for e in extra], device=d.var_index.device)
        self._block_index: dict = {}
        self.key = (d.basis_t.dtype, d.basis_t.device)

    def block_index(self, blk: slice) -> torch.Tensor:
        """Flat table indices of the variables of the sites ``blk``, ``[n_var · n_b]`` (kept)."""
        key = (blk.start, blk.stop)
        if key not in self._block_index:
            self._block_index[key] = self.var_index[:, blk].reshape(-1)
        return self._block_index[key]


_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _layout(d) -> _Layout:
    """The descriptor's ``_Layout``, built once (again after ``d.to(...)``)."""
    lay = _LAYOUTS.get(d)
    if lay is None or lay.key != (d.basis_t.dtype, d.basis_t.device):
        lay = _LAYOUTS[d] = _Layout(d)
    return lay


class FastState:
    """The descriptor tables of spins ``[B, N, 3]`` (one forward pass), from which
    :meth:`energy_fields` gives E, −∂E/∂S (and N for a μ-input network) at any μ."""

    def __init__(self, descriptor, spins: torch.Tensor):
        d = descriptor
        self.d, self.N, self.lay = d, d.n_sites, _layout(d)
        # rows of [B, n_shift · N, 3], then site-last (a last-dim gather would be ~10x slower)
        self.sh = spins.index_select(-2, d.shift_index).transpose(-1, -2).unflatten(-1, (-1, self.N))
        self.sh = self.sh.contiguous()  # [B, 3, n_shift, N]
        self.s0 = spins.transpose(-1, -2).unsqueeze(-2)  # [B, 3, 1, N]
        self.sb = self.sh.index_select(-2, d.bond_shift)
        self.sk, self.sl = self.sh.index_select(-2, d.tri_shift[:, 0]), self.sh.index_select(-2, d.tri_shift[:, 1])
        self.cr = _cross(self.sk, self.sl)
        bonds = (self.s0 * self.sb).sum(-3)
        chi = (self.s0 * self.cr).sum(-3)
        self.tables = torch.cat([bonds, chi], dim=-2).flatten(-2)  # [B, n_types · N]

    def _blocks(self) -> list[slice]:
        """Blocks of sites of equal size, each with at most ~``BLOCK_ELEMENTS`` products of terms."""
        budget = BLOCK_ELEMENTS if self.tables.device.type == "cpu" else GPU_BLOCK_ELEMENTS
        step = max(32, budget // len(self.lay.a))
        step = -(-self.N // -(-self.N // step))  # blocks of equal size
        return [slice(a, min(a + step, self.N)) for a in range(0, self.N, step)]

    def _coefficients(self, b: int, blk: slice) -> torch.Tensor:
        """Coefficients of configuration ``b`` at sites ``blk``, orbit by orbit, the last row ones:
        ``[n_coef, n_b]``."""
        nb = blk.stop - blk.start
        v = self.tables[b].index_select(0, self.lay.block_index(blk)).view(-1, nb)
        f = v.new_empty(self.lay.n_coef, nb)
        f[-1] = 1.0
        for u, _, var, coef in self.lay.groups:
            torch.matmul(u, v[var].view(u.shape[0], u.shape[2], nb), out=f[coef].view(u.shape[0], u.shape[1], nb))
        return f

    def _features_of(self, f: torch.Tensor):
        """Features ``[F, n_b]`` of coefficients ``f``, and the two factors of every term that the
        backward reuses."""
        fa, fb = f.index_select(0, self.lay.a), f.index_select(0, self.lay.b)
        prod = fa * fb
        x = prod[: self.lay.n_features]
        x[self.lay.tail] += prod[self.lay.n_features:]
        return x, fa, fb

    @torch.no_grad()
    def first_layer(self, net) -> torch.Tensor:
        """``W̃_1 x + b̃_1`` ``[B, N, H]`` (the first layer without its μ input), block by block:
        what a μ-input network's N(μ) needs (``SiteEnergyNet.number_at_first_layer``)."""
        w1, b1 = _folded(net)
        out = self.tables.new_empty(self.tables.shape[0], self.N, w1.shape[0])
        for b in range(self.tables.shape[0]):
            for blk in self._blocks():
                out[b, blk] = torch.addmm(b1[:, None], w1, self._features_of(self._coefficients(b, blk))[0]).T
        return out

    @torch.no_grad()
    def energy_fields(self, net, mu: torch.Tensor | None = None, first: torch.Tensor | None = None):
        """``(E [B], fields [B, N, 3], N [B] or None)`` of the site-energy network ``net`` at ``mu``
        (``[B]``, μ-input networks only); ``first``: :meth:`first_layer` if already computed."""
        mlp = _Mlp(net)
        B = self.tables.shape[0]
        esum = self.tables.new_zeros(B)  # Σ_i of the site energies less their constant part
        nsum = self.tables.new_zeros(B)  # Σ_i n_i (level head)
        dsum = self.tables.new_zeros(B, mlp.w1.shape[0])  # Σ_i ∂E/∂z_1(i)
        z_mu = ((mu - net.mu_mean) / net.mu_std)[:, None, None] * mlp.w_mu[:, None] if mlp.w_mu is not None else None
        dtab = torch.zeros_like(self.tables)
        for b in range(B):
            for blk in self._blocks():
                f = self._coefficients(b, blk)
                if first is None:
                    x, fa, fb = self._features_of(f)  # [F, n_b]
                    z = torch.addmm(mlp.b1[:, None], mlp.w1, x)
                else:
                    fa, fb = f.index_select(0, self.lay.a), f.index_select(0, self.lay.b)
                    z = first[b, blk].T
                e, n, delta = mlp.forward_backward(z if z_mu is None else z + z_mu[b], None if mu is None else mu[b])
                esum[b] += e
                if n is not None:
                    nsum[b] += n
                dsum[b] += delta.sum(-1)
                dv = self._table_gradient(mlp.w1t @ delta, f, fa, fb)
                dtab[b].scatter_add_(0, self.lay.block_index(blk), dv.view(-1))
        if mlp.levels:
            return esum, self._spin_gradient(dtab).neg_(), nsum
        energy = esum + (net.energy_scale * mlp.b_out + net.energy_shift) * self.N
        number = None
        if net.mu_input:
            energy = energy - net.number_shift * mu * self.N
            number = net.number_shift * self.N - dsum @ mlp.w_mu / net.mu_std
        return energy, self._spin_gradient(dtab).neg_(), number

    def _table_gradient(self, dx: torch.Tensor, f: torch.Tensor, fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        """∂E/∂v ``[n_var, n_b]`` (variables orbit by orbit) from ∂E/∂x ``[F, n_b]``: through the
        terms of the features to the coefficients, then ∂E/∂v_o = U_o^T ∂E/∂f_o."""
        F = self.lay.n_features
        dprod = dx.new_empty(len(self.lay.a), dx.shape[-1])  # ∂E/∂(each term)
        dprod[:F] = dx
        dprod[F:] = dx[self.lay.tail]
        df = torch.zeros_like(f).index_add_(0, self.lay.a, dprod * fb)
        df.index_add_(0, self.lay.b, dprod.mul_(fa))
        dv = f.new_empty(len(self.lay.var_index), f.shape[-1])
        for u, ut, var, coef in self.lay.groups:
            torch.matmul(ut, df[coef].view(u.shape[0], u.shape[1], -1), out=dv[var].view(u.shape[0], u.shape[2], -1))
        return dv

    def _spin_gradient(self, dtab: torch.Tensor) -> torch.Tensor:
        """∂E/∂S ``[B, N, 3]`` from ∂E/∂(table entries) ``[B, n_types · N]``."""
        d = self.d
        dt = dtab.unflatten(-1, (-1, self.N))
        db, dc = dt[:, : len(d.bond_shift)].unsqueeze(1), dt[:, len(d.bond_shift):].unsqueeze(1)  # [B, 1, n, N]
        grad = (db * self.sb).sum(-2) + (dc * self.cr).sum(-2)  # the entries' own site x
        moved = torch.zeros_like(self.sh)  # contributions to the site x + d of shift d
        moved.index_add_(-2, d.bond_shift, db * self.s0)
        moved.index_add_(-2, d.tri_shift[:, 0], dc * _cross(self.sl, self.s0))
        moved.index_add_(-2, d.tri_shift[:, 1], dc * _cross(self.s0, self.sk))
        grad = grad.index_add(-1, d.shift_index, moved.flatten(-2))
        return grad.transpose(-1, -2)


class _Mlp:
    """The network's layers as the fast path uses them: the folded first layer (``_folded``) and its
    transpose, the hidden layers with their transposes, the output weights times the energy scale."""

    def __init__(self, net):
        linears = [m for m in net.mlp if isinstance(m, nn.Linear)]
        self.acts = [m for m in net.mlp if not isinstance(m, nn.Linear)]
        self.net, self.levels = net, net.levels
        self.w1, self.b1 = _folded(net)
        self.w1t = self.w1.T.contiguous()
        self.w_mu = linears[0].weight[:, net.n_features] if net.mu_input and not self.levels else None
        self.hidden = [(lin.weight, lin.weight.T.contiguous(), lin.bias[:, None]) for lin in linears[1:-1]]
        self.w_out = net.energy_scale * linears[-1].weight[0]  # ∂ε/∂h_{L−1} (one output)
        self.b_out = linears[-1].bias[0]
        self.w_all, self.b_all = linears[-1].weight, linears[-1].bias[:, None]  # all C outputs (level head)

    def forward_backward(self, z: torch.Tensor, mu: torch.Tensor | None = None):
        """From z_1 ``[H, n_b]``: Σ over the block of the site energies less their constant part
        (one output: w_out · h_{L−1}; level head: ω at ``mu``), Σ n_i (level head, else None), and
        ∂E/∂z_1 ``[H, n_b]``."""
        slopes = []
        for act, (w, _, bias) in zip(self.acts[:-1], self.hidden):
            a, sl = _value_and_slope(act, z)
            slopes.append(sl)
            z = torch.addmm(bias, w, a)
        a, sl = _value_and_slope(self.acts[-1], z)
        if self.levels:
            omega, number, g = self.net.head(torch.addmm(self.b_all, self.w_all, a).T, mu, grad=True)
            energy, number = omega.sum(), number.sum()
            delta = (self.w_all.T @ g.T).mul_(sl)
        else:
            energy, number = a.sum(-1) @ self.w_out, None
            delta = self.w_out[:, None] * sl
        for (_, wt, _), sl in zip(reversed(self.hidden), reversed(slopes)):
            delta = (wt @ delta).mul_(sl)
        return energy, number, delta


def _folded(net) -> tuple[torch.Tensor, torch.Tensor]:
    """The first layer with the feature standardisation folded in: W̃_1 = W_1 / std, b̃_1 = b_1 − W̃_1 mean."""
    first = next(m for m in net.mlp if isinstance(m, nn.Linear))
    w1 = first.weight[:, :net.n_features] / net.feature_std
    return w1, first.bias - w1 @ net.feature_mean
