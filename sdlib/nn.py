"""Behler–Parrinello force field: descriptor → MLP site energy, fields by automatic differentiation.

    E = Σ_i ε(G_i),   G_i = descriptor features of the neighbourhood of site i,
    H_i = -∂E/∂S_i    (gradient in R^3, PHYSICS.md; computed with ``torch.autograd.grad``).

``ε`` is a multilayer perceptron of the standardised features ``(G - mean) / std`` whose output is
scaled and shifted, ``ε = scale · MLP(·) + shift``; mean, std, scale and shift are buffers fitted on
training data (:meth:`SiteEnergyNet.fit_normalization`). Energy units are t, time ħ/t.
Reference: Behler, Parrinello, PRL 98, 146401 (2007); Zhang, Zhang, Chern, arXiv:2201.00798.

A model built with ``mu_input=True`` takes the chemical potential as one more input of the site
energy, ε_i = ε(G_i, μ), and learns the grand potential Ω(S, μ) = Σ_i ε_i at electron temperature
kT > 0 (labels from :meth:`sdlib.ExactSolver.grand_labels`). Its electron number is
N(S, μ) = -∂Ω/∂μ. At fixed filling it solves N(S, μ*) = N_e for μ* (``ensemble.FixedFilling``,
the library's one root finder, inside the trained range ``physics["mu_range"]``) and returns the
free energy F = Ω(μ*) + μ* N_e with fields -∂Ω/∂S at μ*, which equal -dF/dS because ∂Ω/∂μ = -N_e at μ* (the same Legendre identity as for
``ExactSolver`` at kT > 0). The site energies stay local while the electron number is conserved
globally, as in the reference.

Saved models are two files: ``<stem>.safetensors`` (tensors only) and ``<stem>.json`` (descriptor
spec, network shape, physics, sdlib version, provenance, SHA-256 of the weights). Loading parses JSON
and safetensors only — nothing is unpickled — and every failure is a ``ValueError``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from .ensemble import FixedFilling, solve_mu
from .fastpath import FastState
from .levelhead import init_output_layer, level_head, level_number, n_outputs, place_levels, spectrum_bound
from .forcefield import ForceFieldOutput
from .io import atomic_write
from .lattice import Lattice
from .model import check_spins

__all__ = ["SiteEnergyNet", "MLForceField", "GrandOutput", "register_descriptor", "FORMAT"]

FORMAT = "sdlib.MLForceField/1"
ACTIVATIONS = {"silu": nn.SiLU, "tanh": nn.Tanh, "softplus": nn.Softplus}
_DESCRIPTORS: dict = {}
NUMBER_BLOCK = 1 << 16  # numbers per block of the forward-mode N(μ) pass on the CPU (value and slope stay in cache)


def _silu(z, dz):
    sg = torch.sigmoid(z)
    return z * sg, dz * (sg * (1 + z * (1 - sg)))


def _tanh(z, dz):
    t = torch.tanh(z)
    return t, dz * (1 - t * t)


def _softplus(z, dz):
    return nn.functional.softplus(z), dz * torch.sigmoid(z)


# (value, derivative) of each activation, for the forward-mode μ-derivative of the site energy
_ACTIVATION_VALUE_AND_SLOPE = {nn.SiLU: _silu, nn.Tanh: _tanh, nn.Softplus: _softplus}
_DATA = Path(__file__).resolve().parent / "data"


def register_descriptor(cls):
    """Allow ``cls`` (with ``spec()`` / ``from_spec(spec, lattice, dtype)``) in saved models."""
    _DESCRIPTORS[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


def _descriptor_class(name):
    if name == "sdlib.descriptors.Descriptor" and name not in _DESCRIPTORS:
        from .descriptors import Descriptor

        _DESCRIPTORS[name] = Descriptor
    if name not in _DESCRIPTORS:
        raise ValueError(f"unknown descriptor {name!r}; known: {sorted(_DESCRIPTORS) or ['sdlib.descriptors.Descriptor']}")
    return _DESCRIPTORS[name]


class SiteEnergyNet(nn.Module):
    """Site energy ``ε(G) = scale · MLP((G - mean)/std) + shift`` for features ``[..., F]`` → ``[...]``.

    With ``mu_input=True`` the chemical potential is one more input and the site energy is
    ``ε(G, μ) = scale · MLP((G - mean)/std, (μ - μ̄)/σ_μ) + shift - n̄ μ`` (n̄: mean electrons per
    site of the training data, so the MLP learns only the deviation from -n̄ μ).

    With ``levels=K > 0`` (and ``mu_input=True``) μ is not an input of the MLP; its 1 + 2K outputs
    are an offset and K levels with weights of a learned local density of states, and the site
    grand potential ω(G, μ) is that of those levels filled at the electron temperature
    (``sdlib.levelhead``): N(μ) then rises strictly and μ* at fixed filling is unique. The levels'
    centre, half-width and temperature are buffers (:meth:`set_spectrum`).
    """

    def __init__(self, n_features: int, hidden=(64, 64), activation: str = "silu", mu_input: bool = False,
                 levels: int = 0):
        super().__init__()
        if not isinstance(n_features, int) or n_features < 1:
            raise ValueError(f"n_features must be an integer >= 1, got {n_features!r}")
        hidden = tuple(hidden)
        if not hidden or not all(isinstance(h, int) and h >= 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty sequence of integers >= 1, got {hidden!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if not isinstance(mu_input, bool):
            raise ValueError(f"mu_input must be True or False, got {mu_input!r}")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 0 or (levels and not mu_input):
            raise ValueError(f"levels must be an integer >= 0 (0: the plain head; >= 1 needs mu_input=True), "
                             f"got {levels!r} with mu_input={mu_input!r}")
        self.n_features, self.hidden, self.activation, self.mu_input = n_features, hidden, activation, mu_input
        self.levels = levels
        layers, width = [], n_features + int(mu_input and not levels)
        for h in hidden:
            layers += [nn.Linear(width, h, dtype=torch.float64), ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, n_outputs(levels) if levels else 1, dtype=torch.float64))
        if levels:
            init_output_layer(layers[-1], levels)
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("feature_mean", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("feature_std", torch.ones(n_features, dtype=torch.float64))
        self.register_buffer("energy_shift", torch.zeros((), dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float64))
        extra = ("level_center", 0.0), ("level_width", 1.0), ("level_kT", 1.0)
        if mu_input:
            for name, value in extra if levels else (("mu_mean", 0.0), ("mu_std", 1.0), ("number_shift", 0.0)):
                self.register_buffer(name, torch.tensor(value, dtype=torch.float64))

    @torch.no_grad()
    def set_spectrum(self, center: float, width: float, kT: float) -> None:
        """Level head: e_k = center + width · o_k, filled at electron temperature ``kT`` (> 0)."""
        if not self.levels:
            raise ValueError("set_spectrum is for a network with levels >= 1")
        for name, v in (("center", center), ("width", width), ("kT", kT)):
            if not isinstance(v, (int, float)) or not math.isfinite(v) or (name != "center" and v <= 0):
                raise ValueError(f"{name} must be a finite number{'' if name == 'center' else ' > 0'}, got {v!r}")
        self.level_center.fill_(center)
        self.level_width.fill_(width)
        self.level_kT.fill_(kT)

    def head(self, o: torch.Tensor, mu, grad: bool = False):
        """Level head: (ω, n[, ∂ω/∂o]) of the MLP outputs ``o`` ``[..., 1 + 2K]`` at ``mu`` (``levelhead.level_head``)."""
        return level_head(o, mu, self.levels, self.energy_scale, self.energy_shift, self.level_center,
                          self.level_width, self.level_kT, grad)

    @torch.no_grad()
    def fit_normalization(self, features: torch.Tensor, energy_per_site: torch.Tensor, field_rms: float,
                          mu: torch.Tensor | None = None, number_per_site: torch.Tensor | None = None) -> None:
        """Set mean/std from features ``[M, F]``, shift = mean energy per site, scale = field RMS.

        A μ-input net also takes the labels' ``mu`` and ``number_per_site`` (same shape as
        ``energy_per_site``): μ̄, σ_μ, n̄ from them and shift = mean(Ω/N + n̄ μ). A level head instead
        places its starting levels at the labels' mean μ and n̄ (``levelhead.place_levels``) and sets
        shift = mean Ω/N less the mean site grand potential there.
        """
        features = features.reshape(-1, self.n_features).to(self.feature_mean)
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp_min(1e-6 * features.std(0).max().clamp_min(1e-12)))
        energy = torch.as_tensor(energy_per_site).to(self.energy_shift)
        self.energy_scale.copy_(torch.tensor(float(field_rms) if field_rms > 0 else 1.0))
        if self.mu_input:
            if mu is None or number_per_site is None:
                raise ValueError("a mu_input network needs mu and number_per_site to fit its normalisation")
            mu = torch.as_tensor(mu).to(energy).expand_as(energy)
            if self.levels:  # levels placed to hold the labels' electrons at their mean μ (levelhead.place_levels);
                # shift: mean Ω/N less the mean site grand potential without shift at the mean μ
                self.energy_shift.zero_()
                place_levels(self.mlp[-1], self.levels, float(mu.mean()), float(torch.as_tensor(number_per_site).mean()),
                             float(self.level_center), float(self.level_width))
                o = self.mlp((features - self.feature_mean) / self.feature_std)
                self.energy_shift.copy_(energy.mean() - self.head(o, mu.mean().expand(o.shape[:-1]))[0].mean())
                return
            self.mu_mean.copy_(mu.mean())
            self.mu_std.copy_(mu.std() if mu.numel() > 1 and mu.std() > 1e-6 else torch.ones(()))
            self.number_shift.copy_(torch.as_tensor(number_per_site).to(energy).mean())
            energy = energy + self.number_shift * mu
        self.energy_shift.copy_(energy.mean())

    def at_features(self, features: torch.Tensor):
        """``μ ↦ ε(G, μ)`` for fixed features ``[..., N, F]``; the product with the first layer is done
        once, so the many evaluations of a solve for μ cost only the hidden layers. ``μ`` is a
        scalar or one value per configuration ``[...]``."""
        pre, w_mu = self._first_layer(features)
        if self.levels:
            o = self.mlp[1:](pre)
            return lambda mu: self.head(o, self._mu_like(mu, pre))[0]

        def energy(mu):
            m = self._mu_like(mu, pre)
            h = pre + ((m - self.mu_mean) / self.mu_std)[..., None] * w_mu
            return self.energy_scale * self.mlp[1:](h).squeeze(-1) + self.energy_shift - self.number_shift * m

        return energy

    def number_at_features(self, features: torch.Tensor):
        """``μ ↦ N(μ) = -Σ_i ∂ε_i/∂μ`` ``[...]`` for fixed features ``[..., N, F]``, by forward-mode
        differentiation through the hidden layers (one pass carrying value and μ-derivative, no
        autograd graph): what a solve for μ* evaluates ten times per step at fixed filling."""
        return self.number_at_first_layer(self._first_layer(features)[0])

    def number_at_first_layer(self, pre: torch.Tensor):
        """``number_at_features`` from the first layer's product without the μ input,
        ``pre = W_1 (f - mean)/std + b_1`` ``[..., N, H]`` (``fastpath.FastState.first_layer``).
        On the CPU the sites go through the hidden layers in blocks of ``NUMBER_BLOCK`` numbers, so a
        block's value and derivative stay in cache (unblocked, the cost per site grew with N).

        N(μ) is summed and returned in float64 whatever the network's dtype: a float32 sum of
        N ≈ 10⁴–10⁶ electrons is quantised at ulp(N) ≈ 10⁻³–10⁻¹, coarser than the change of N
        across a grid cell of the μ search when μ* sits in a gap of the spectrum (dN/dμ small: a
        phase-separated texture), and the search then stalls. How closely N must match N_e stays
        set by the network's dtype (``_MLState.number_dtype``). A level head computes its levels
        once here; N(μ) is then a sum of Fermi functions (``levelhead.level_number``)."""
        if self.levels:
            with torch.no_grad():
                occ = level_number(self.mlp[1:](pre), self.levels, self.level_center, self.level_width, self.level_kT)
            return lambda mu: occ(self._mu_like(mu, pre)).sum(-1, dtype=torch.float64)
        w_mu = self.mlp[0].weight[:, self.n_features]
        dz = w_mu / self.mu_std
        n = pre.shape[-2]
        step = n if pre.device.type != "cpu" else max(64, NUMBER_BLOCK // pre.shape[-1])

        @torch.no_grad()
        def number(mu):
            m = (self._mu_like(mu, pre) - self.mu_mean) / self.mu_std
            total = pre.new_zeros(pre.shape[:-2], dtype=torch.float64)
            for a in range(0, n, step):
                h = torch.addcmul(pre[..., a:a + step, :], m[..., a:a + step, None], w_mu)
                dh = dz
                for layer in self.mlp[1:]:
                    if isinstance(layer, nn.Linear):
                        h, dh = layer(h), dh @ layer.weight.T
                    else:
                        h, dh = _ACTIVATION_VALUE_AND_SLOPE[type(layer)](h, dh)
                total += dh.squeeze(-1).sum(-1, dtype=torch.float64)
            return self.number_shift.double() * n - self.energy_scale.double() * total

        return number

    def _first_layer(self, features: torch.Tensor):
        x = (features - self.feature_mean) / self.feature_std
        first = self.mlp[0]
        w_mu = None if self.levels else first.weight[:, self.n_features]
        return x @ first.weight[:, :self.n_features].T + first.bias, w_mu

    @staticmethod
    def _mu_like(mu, pre: torch.Tensor) -> torch.Tensor:
        m = torch.as_tensor(mu, dtype=pre.dtype, device=pre.device)
        return m.reshape(m.shape + (1,) * (pre.dim() - 1 - m.dim())).expand(pre.shape[:-1])

    def forward(self, features: torch.Tensor, mu=None) -> torch.Tensor:
        if self.mu_input:
            if mu is None:
                raise ValueError("this network takes the chemical potential as input: pass mu")
            return self.at_features(features)(mu)
        if mu is not None:
            raise ValueError("this network was built without the chemical potential as input (mu_input=False)")
        x = (features - self.feature_mean) / self.feature_std
        return self.energy_scale * self.mlp(x).squeeze(-1) + self.energy_shift


GrandOutput = ForceFieldOutput  # the grand-canonical result (energy Ω, fields, number, mu): one result type


def _check_physics(physics, kind: str, mu_input: bool = False) -> dict:
    if not isinstance(physics, dict):
        raise ValueError(f"physics must be a dict with lattice, t, J, mu or filling, kT; got {type(physics).__name__}")
    p = dict(physics)
    p.setdefault("lattice", kind)
    if p["lattice"] != kind:
        raise ValueError(f"physics['lattice']={p['lattice']!r} differs from the descriptor's lattice kind {kind!r}")
    for key in ("t", "J", "kT"):
        if key not in p or not isinstance(p[key], (int, float)) or not math.isfinite(p[key]):
            raise ValueError(f"physics[{key!r}] must be a finite number, got {p.get(key)!r}")
    if ("mu" in p) == ("filling" in p):
        raise ValueError("physics must hold exactly one of 'mu' or 'filling'")
    if mu_input:
        r = p.get("mu_range")
        if not (isinstance(r, (list, tuple)) and len(r) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v)
                                                                      for v in r) and r[0] < r[1]):
            raise ValueError(f"a mu_input model needs physics['mu_range'] = [lo, hi] (finite, lo < hi), the range of "
                             f"chemical potentials it was trained on; got {r!r}")
        if "filling" in p and not 0 < p["filling"] < 1:
            raise ValueError(f"physics['filling'] must lie in (0, 1), got {p['filling']!r}")
    return json.loads(json.dumps(p))


class MLForceField(nn.Module):
    """Behler–Parrinello force field (``ForceField`` interface).

    Parameters
    ----------
    descriptor : a ``Descriptor`` (``sdlib.descriptors``) built on the lattice to simulate.
    hidden, activation : shape of the site-energy MLP (default (64, 64), SiLU: smooth, so fields
        and their derivatives are continuous).
    physics : dict of the s-d parameters the model was trained for: ``lattice`` (kind), ``t``,
        ``J``, ``mu`` or ``filling``, ``kT``; exposed as ``ff.physics``.
    provenance : free JSON dict saved with the model (data, sizes, epochs, errors, hardware).
    check_norm : require unit spins (default True); False admits any length (Cartesian
        finite differences of the energy, as for ``ExactSolver``).
    mu_input : the site energy also takes the chemical potential (module docstring); ``physics``
        then holds ``mu_range`` and either ``mu`` (``ff(spins)`` is Ω at that μ) or ``filling``
        (``ff(spins)`` is F at the μ* that conserves N_e = round(2N·filling)).
    levels : 0 (default) for μ as a plain input of the MLP; K >= 1 for the level head of
        ``sdlib.levelhead`` (a learned local density of states of K levels, filled at
        ``physics["kT"]`` > 0, centred on the model's spectrum): N(μ) rises strictly, so μ* is unique.

    ``ff(spins, create_graph=False)``: spins ``[N, 3]`` or ``[B, N, 3]`` → ``ForceFieldOutput``
    with ``energy`` ``[]``/``[B]`` = Σ_i ε_i and ``fields = -∂E/∂S``. ``create_graph=True`` keeps the
    graph of the fields for training (double backward). Works in float64 (default) or float32
    (``ff.to(torch.float32)``); outputs are returned in the spins' dtype.
    """

    def __init__(self, descriptor, hidden=(64, 64), activation: str = "silu", physics: dict | None = None,
                 provenance: dict | None = None, check_norm: bool = True, mu_input: bool = False, levels: int = 0):
        super().__init__()
        self.check_norm = bool(check_norm)
        for attr in ("kind", "n_sites", "n_features", "spec"):
            if not hasattr(descriptor, attr):
                raise ValueError(f"descriptor must be an sdlib Descriptor (missing .{attr}), got {type(descriptor).__name__}")
        self.descriptor = descriptor
        self.net = SiteEnergyNet(descriptor.n_features, hidden, activation, mu_input, levels)
        default = {"t": 1.0, "J": 1.0, "mu": 0.0, "kT": 0.1 if levels else 0.0} | ({"mu_range": [-1.0, 1.0]} if mu_input else {})
        self.physics = p = _check_physics(physics if physics is not None else default, descriptor.kind, mu_input)
        if levels:
            if p["kT"] <= 0:
                raise ValueError(f"a level head fills its levels at the electron temperature: physics['kT'] must be "
                                 f"> 0, got {p['kT']!r}")
            self.net.set_spectrum(0.0, spectrum_bound(descriptor.kind, p["t"], p["J"]), float(p["kT"]))
        self.provenance = json.loads(json.dumps(provenance or {}))
        self.weights_sha256: str | None = None  # SHA-256 of the weights file once saved or loaded
        self.fast = True  # inference (create_graph=False) by the hand-written backward of sdlib.fastpath

    def _fast_state(self, spins: torch.Tensor, create_graph: bool):
        """A ``fastpath.FastState`` of checked spins ``[B, N, 3]`` in the model's dtype, or None where
        the autograd path is needed (a graph of the fields asked for, ``fast`` switched off, or a
        descriptor other than ``sdlib.descriptors.Descriptor``)."""
        from .descriptors import Descriptor

        if not self.fast or create_graph or spins.requires_grad or type(self.descriptor) is not Descriptor:
            return None  # (a descriptor of another kind has no tables for the hand-written backward)
        return FastState(self.descriptor, self.descriptor._check(spins.detach().to(self.dtype)))

    @property
    def n_sites(self) -> int:
        return self.descriptor.n_sites

    @property
    def dtype(self) -> torch.dtype:
        return self.net.feature_mean.dtype

    def _check(self, spins) -> torch.Tensor:
        if isinstance(spins, torch.Tensor) and spins.dim() in (2, 3) and spins.shape[-1] == 3 \
                and spins.shape[-2] != self.n_sites:
            raise ValueError(f"spins have {spins.shape[-2]} sites but this force field is built on a "
                             f"{self.descriptor.kind} lattice of {self.n_sites} sites; rebuild it with "
                             f"MLForceField.load(path, lattice=...) for your lattice")
        tol = 1e-4 if isinstance(spins, torch.Tensor) and spins.dtype == torch.float32 else 1e-6
        return check_spins(spins, self.n_sites, check_norm=self.check_norm, atol=tol)

    @property
    def mu_input(self) -> bool:
        return self.net.mu_input

    @property
    def n_electrons(self) -> int | None:
        """``round(2N · filling)`` for a model at fixed filling, else None."""
        f = self.physics.get("filling")
        return None if f is None else int(round(2 * self.n_sites * f))

    def site_energies(self, spins: torch.Tensor, mu=None) -> torch.Tensor:
        """Site energies ε_i, ``[N]`` or ``[B, N]`` (units of t); ``mu`` only for a μ-input model."""
        return self.net(self.descriptor(spins), mu)

    def _graph_input(self, spins: torch.Tensor, create_graph: bool) -> torch.Tensor:
        """The spins in the model's dtype as the leaf of the fields' graph; an outer graph (e.g. gradcheck
        of the fields) is kept only when one is asked for (``create_graph`` with spins that require grad)."""
        if create_graph and spins.requires_grad:
            return spins.to(self.dtype)
        return spins.detach().to(self.dtype).requires_grad_(True)

    def _check_mu(self, mu, spins: torch.Tensor) -> torch.Tensor:
        lo, hi = self.physics["mu_range"]
        m = torch.as_tensor(mu, dtype=torch.float64, device=spins.device).detach()
        batch = spins.shape[:-2]
        if m.dim() == 0:
            m = m.expand(batch)
        if m.shape != batch or not torch.isfinite(m).all() or m.min() < lo - 1e-12 or m.max() > hi + 1e-12:
            raise ValueError(f"mu must be a number or one number per configuration (shape {list(batch)}) inside the "
                             f"range [{lo}, {hi}] this model was trained on, got {m.tolist()}")
        return m.clone()

    def grand_state(self, spins, create_graph: bool = False) -> "_MLState":
        """Grand-canonical state of ``spins`` (``sdlib.ensemble``) for a μ-input model: the descriptor
        features are computed once; ``number(mu)`` costs the hidden layers only, ``at(mu)`` one backward."""
        if not self.mu_input:
            raise ValueError("this network was built without the chemical potential as input (mu_input=False): "
                             "it has no grand-canonical state; it is evaluated at its own ensemble by ff(spins)")
        return _MLState(self, self._check(spins), create_graph)

    def grand(self, spins, mu, create_graph: bool = False) -> ForceFieldOutput:
        """Ω(S, μ), fields -∂Ω/∂S at fixed μ and N = -∂Ω/∂μ of a μ-input model (``mu``: scalar or ``[B]``,
        inside ``physics["mu_range"]``); ``mu=None`` at fixed filling: the canonical result at μ*
        (``ensemble.FixedFilling``), whose ``energy`` is Ω(μ*)."""
        if not self.mu_input:
            raise ValueError("grand() needs a model with the chemical potential as input (mu_input=True)")
        if mu is None:
            out = self._fixed_filling()(spins, create_graph=create_graph)
            return ForceFieldOutput(out.energy - (out.mu * self.n_electrons).to(out.energy), out.fields, out.number, out.mu)
        return self.grand_state(spins, create_graph).at(mu)

    def _fixed_filling(self) -> FixedFilling:
        if self.n_electrons is None:
            raise ValueError("this model is not at fixed filling (physics has no 'filling'): give mu")
        filling = self.__dict__.get("_filling")  # kept: it starts each μ* search at the last μ*
        if filling is None:
            filling = self.__dict__["_filling"] = FixedFilling(self, filling=self.physics["filling"])
        return filling

    @torch.no_grad()
    def solve_mu(self, spins) -> torch.Tensor:
        """μ* ``[]``/``[B]`` (float64) with N(S, μ*) = N_e for a μ-input model at fixed filling
        (``ensemble.solve_mu`` inside ``physics["mu_range"]``)."""
        if not self.mu_input or self.n_electrons is None:
            raise ValueError("solve_mu needs a mu_input model at fixed filling (physics['filling'])")
        return solve_mu(self.grand_state(spins), self.n_electrons, f"filling={self.physics['filling']}").to(torch.float64)

    def forward(self, spins, create_graph: bool = False) -> ForceFieldOutput:
        if self.mu_input:
            if "mu" in self.physics:
                return self.grand(spins, self.physics["mu"], create_graph)
            return self._fixed_filling()(spins, create_graph=create_graph)
        spins = self._check(spins)
        out_dtype = spins.dtype
        single = spins.dim() == 2
        state = self._fast_state(spins.unsqueeze(0) if single else spins, create_graph)
        if state is not None:
            with torch.no_grad():
                energy, fields, _ = state.energy_fields(self.net)
            if single:
                energy, fields = energy[0], fields[0]
            return ForceFieldOutput(energy.to(out_dtype), fields.to(out_dtype))
        with torch.enable_grad():
            s = self._graph_input(spins, create_graph)
            energy = self.site_energies(s).sum(-1)
            (grad,) = torch.autograd.grad(energy.sum(), s, create_graph=create_graph)
        fields = -grad
        if not create_graph:
            energy, fields = energy.detach(), fields.detach()
        return ForceFieldOutput(energy.to(out_dtype), fields.to(out_dtype))

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict:
        from . import __version__

        return {"format": FORMAT, "sdlib_version": __version__, "descriptor": self.descriptor.spec(),
                "descriptor_class": _class_name(self.descriptor), "hidden": list(self.net.hidden),
                "activation": self.net.activation, "n_features": self.net.n_features, "mu_input": self.mu_input,
                "levels": self.net.levels, "physics": self.physics, "provenance": self.provenance}

    def save(self, path) -> tuple[str, str]:
        """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; returns both paths."""
        from safetensors.torch import save

        wpath, cpath = _paths(path)
        blob = save({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()})
        cfg = self.config() | {"weights_sha256": hashlib.sha256(blob).hexdigest()}
        for target, data in ((wpath, blob), (cpath, (json.dumps(cfg, indent=2) + "\n").encode())):
            with atomic_write(target) as fh:
                fh.write(data)
        self.weights_sha256 = cfg["weights_sha256"]
        return wpath, cpath

    @classmethod
    def load(cls, path, lattice: Lattice | None = None, dtype: torch.dtype = torch.float64) -> "MLForceField":
        """Load a saved model; ``lattice`` (same kind, any L > 2·cutoff) defaults to the training lattice."""
        cfg, state = _read_model(*_paths(path))
        if lattice is None:
            L = cfg["physics"].get("L")
            if not isinstance(L, int):
                raise ValueError("the saved model does not record its lattice size; pass lattice=...")
            lattice = Lattice(cfg["physics"]["lattice"], L)
        if not isinstance(lattice, Lattice):
            raise ValueError(f"lattice must be an sdlib Lattice, got {type(lattice).__name__}")
        if lattice.kind != cfg["physics"]["lattice"]:
            raise ValueError(f"this model was trained on the {cfg['physics']['lattice']} lattice; it cannot be "
                             f"applied to a {lattice.kind} lattice")
        desc = _descriptor_class(cfg["descriptor_class"]).from_spec(cfg["descriptor"], lattice)
        ff = cls(desc, cfg["hidden"], cfg["activation"], cfg["physics"], cfg["provenance"], mu_input=cfg["mu_input"],
                 levels=cfg["levels"])
        try:
            ff.net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"weights do not match the configured network: {e}") from None
        ff.weights_sha256 = cfg["weights_sha256"]  # checked against the file by _read_model
        return ff.to(dtype)

    @classmethod
    def pretrained(cls, name: str, lattice: Lattice | None = None, dtype: torch.dtype = torch.float64) -> "MLForceField":
        """A model shipped in ``sdlib/data``: "square-double-exchange" or "triangular-tetrahedral"."""
        names = sorted(p.stem for p in _DATA.glob("*.json"))
        if name not in names:
            hint = "" if names else " (no model is shipped in sdlib/data yet: train one with scripts/make_models.py)"
            raise ValueError(f"name must be one of {names}, got {name!r}{hint}")
        return cls.load(_DATA / name, lattice, dtype)


class _MLState:
    """The ``sdlib.ensemble`` protocol for a μ-input ``MLForceField``: bracket (the trained μ range),
    number(μ) = -∂Ω/∂μ from the features (summed in float64; ``number_dtype``: the network's dtype
    the site numbers are computed in), at(μ) = Ω, -∂Ω/∂S, N."""

    def __init__(self, ff: MLForceField, spins: torch.Tensor, create_graph: bool):
        self.ff, self.spins, self.create_graph = ff, spins, create_graph
        self.number_dtype = ff.dtype
        self.single = spins.dim() == 2
        self.fast = ff._fast_state(spins.unsqueeze(0) if self.single else spins, create_graph)
        if self.fast is not None:  # no graph: the first layer once (not the features), then the
            with torch.no_grad():  # hand-written backward at μ*
                self.first = self.fast.first_layer(ff.net)
            self._number = ff.net.number_at_first_layer(self.first[0] if self.single else self.first)
        else:
            with torch.enable_grad():
                self.s = ff._graph_input(spins, create_graph)
                self.features = ff.descriptor(self.s)
            self._number = ff.net.number_at_features(self.features.detach())

    @property
    def bracket(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = (torch.full(self.spins.shape[:-2], v, dtype=self.ff.dtype, device=self.spins.device)
                  for v in self.ff.physics["mu_range"])
        return lo, hi

    def number(self, mu: torch.Tensor) -> torch.Tensor:
        return self._number(mu.detach().to(self.ff.dtype))

    def at(self, mu) -> ForceFieldOutput:
        ff, spins = self.ff, self.spins
        m = ff._check_mu(mu, spins).to(ff.dtype)
        if self.fast is not None:
            with torch.no_grad():
                out = self.fast.energy_fields(ff.net, m.reshape(-1), first=self.first)
            if self.single:
                out = [v[0] for v in out]
            return ForceFieldOutput(*(v.to(spins.dtype) for v in out), m.to(torch.float64))
        with torch.enable_grad():
            m.requires_grad_(True)
            omega = ff.net(self.features, m).sum(-1)
            gs, gm = torch.autograd.grad(omega.sum(), (self.s, m), create_graph=self.create_graph)
        out = [omega, -gs, -gm]
        if not self.create_graph:
            out = [v.detach() for v in out]
        return ForceFieldOutput(*(v.to(spins.dtype) for v in out), m.detach().to(torch.float64))


def _class_name(obj) -> str:
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    return "sdlib.descriptors.Descriptor" if name.startswith("sdlib.descriptors.") else name


def _paths(path) -> tuple[str, str]:
    p = os.fspath(path)
    for ext in (".safetensors", ".json"):
        if p.endswith(ext):
            p = p[: -len(ext)]
    return p + ".safetensors", p + ".json"


_CONFIG_TYPES = {"format": str, "descriptor": dict, "descriptor_class": str, "hidden": list, "activation": str,
                 "n_features": int, "mu_input": bool, "levels": int, "physics": dict, "provenance": dict,
                 "weights_sha256": str}


def _read_model(wpath: str, cpath: str) -> tuple[dict, dict]:
    """Parse and check the JSON config and the safetensors weights; any defect is a ``ValueError``."""
    from safetensors.torch import load

    try:
        with open(cpath, "rb") as f:
            cfg = json.loads(f.read().decode("utf-8"))
        with open(wpath, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise ValueError(f"cannot read the model files {cpath} and {wpath}: {e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{cpath} is not a valid JSON model config: {e}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ValueError(f"{cpath} is not an sdlib model config (format must be {FORMAT!r})")
    cfg.setdefault("mu_input", False)  # models saved before μ-input networks existed
    cfg.setdefault("levels", 0)  # models saved before the level head existed
    for key, typ in _CONFIG_TYPES.items():
        if not isinstance(cfg.get(key), typ):
            raise ValueError(f"{cpath}: entry {key!r} must be a {typ.__name__}, got {cfg.get(key)!r}")
    if hashlib.sha256(blob).hexdigest() != cfg["weights_sha256"]:
        raise ValueError(f"{wpath} is corrupt or does not belong to {cpath} (SHA-256 mismatch)")
    try:
        state = load(blob)
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"{wpath} is not a valid safetensors file: {e}") from None
    bad = [k for k, v in state.items() if not v.is_floating_point() or not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{wpath}: tensors {bad} are not finite floating-point arrays")
    return cfg, state
