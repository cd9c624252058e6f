"""Behler–Parrinello force field: descriptor → MLP site energy, fields by automatic differentiation.

    E = Σ_i ε(G_i),   G_i = descriptor features of the neighbourhood of site i,
    H_i = -∂E/∂S_i    (gradient in R^3, PHYSICS.md; computed with ``torch.autograd.grad``).

``ε`` is a multilayer perceptron of the standardised features ``(G - mean) / std`` whose output is
scaled and shifted, ``ε = scale · MLP(·) + shift``; mean, std, scale and shift are buffers fitted on
training data (:meth:`SiteEnergyNet.fit_normalization`). Energy units are t, time ħ/t.
Reference: Behler, Parrinello, PRL 98, 146401 (2007); Zhang, Zhang, Chern, arXiv:2201.00798.

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

from .forcefield import ForceFieldOutput
from .lattice import Lattice
from .model import check_spins

__all__ = ["SiteEnergyNet", "MLForceField", "register_descriptor", "FORMAT"]

FORMAT = "sdlib.MLForceField/1"
ACTIVATIONS = {"silu": nn.SiLU, "tanh": nn.Tanh, "softplus": nn.Softplus}
_DESCRIPTORS: dict = {}
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
    """Site energy ``ε(G) = scale · MLP((G - mean)/std) + shift`` for features ``[..., F]`` → ``[...]``."""

    def __init__(self, n_features: int, hidden=(64, 64), activation: str = "silu"):
        super().__init__()
        if not isinstance(n_features, int) or n_features < 1:
            raise ValueError(f"n_features must be an integer >= 1, got {n_features!r}")
        hidden = tuple(hidden)
        if not hidden or not all(isinstance(h, int) and h >= 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty sequence of integers >= 1, got {hidden!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.n_features, self.hidden, self.activation = n_features, hidden, activation
        layers, width = [], n_features
        for h in hidden:
            layers += [nn.Linear(width, h, dtype=torch.float64), ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, 1, dtype=torch.float64))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("feature_mean", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("feature_std", torch.ones(n_features, dtype=torch.float64))
        self.register_buffer("energy_shift", torch.zeros((), dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float64))

    @torch.no_grad()
    def fit_normalization(self, features: torch.Tensor, energy_per_site: torch.Tensor, field_rms: float) -> None:
        """Set mean/std from features ``[M, F]``, shift = mean energy per site, scale = field RMS."""
        features = features.reshape(-1, self.n_features).to(self.feature_mean)
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp_min(1e-6 * features.std(0).max().clamp_min(1e-12)))
        self.energy_shift.copy_(torch.as_tensor(energy_per_site).to(self.energy_shift).mean())
        self.energy_scale.copy_(torch.tensor(float(field_rms) if field_rms > 0 else 1.0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features - self.feature_mean) / self.feature_std
        return self.energy_scale * self.mlp(x).squeeze(-1) + self.energy_shift


def _check_physics(physics, kind: str) -> dict:
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

    ``ff(spins, create_graph=False)``: spins ``[N, 3]`` or ``[B, N, 3]`` → ``ForceFieldOutput``
    with ``energy`` ``[]``/``[B]`` = Σ_i ε_i and ``fields = -∂E/∂S``. ``create_graph=True`` keeps the
    graph of the fields for training (double backward). Works in float64 (default) or float32
    (``ff.to(torch.float32)``); outputs are returned in the spins' dtype.
    """

    def __init__(self, descriptor, hidden=(64, 64), activation: str = "silu", physics: dict | None = None,
                 provenance: dict | None = None, check_norm: bool = True):
        super().__init__()
        self.check_norm = bool(check_norm)
        for attr in ("kind", "n_sites", "n_features", "spec"):
            if not hasattr(descriptor, attr):
                raise ValueError(f"descriptor must be an sdlib Descriptor (missing .{attr}), got {type(descriptor).__name__}")
        self.descriptor = descriptor
        self.net = SiteEnergyNet(descriptor.n_features, hidden, activation)
        self.physics = _check_physics(physics if physics is not None else {"t": 1.0, "J": 1.0, "mu": 0.0, "kT": 0.0},
                                      descriptor.kind)
        self.provenance = json.loads(json.dumps(provenance or {}))
        self.weights_sha256: str | None = None  # SHA-256 of the weights file once saved or loaded

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

    def site_energies(self, spins: torch.Tensor) -> torch.Tensor:
        """Site energies ε_i, ``[N]`` or ``[B, N]`` (units of t)."""
        return self.net(self.descriptor(spins))

    def forward(self, spins, create_graph: bool = False) -> ForceFieldOutput:
        spins = self._check(spins)
        out_dtype = spins.dtype
        with torch.enable_grad():
            # keep an outer graph (e.g. gradcheck of the fields) only when asked to build one
            s = spins.to(self.dtype) if create_graph and spins.requires_grad else \
                spins.detach().to(self.dtype).requires_grad_(True)
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
                "activation": self.net.activation, "n_features": self.net.n_features,
                "physics": self.physics, "provenance": self.provenance}

    def save(self, path) -> tuple[str, str]:
        """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; returns both paths."""
        from safetensors.torch import save

        wpath, cpath = _paths(path)
        blob = save({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()})
        cfg = self.config() | {"weights_sha256": hashlib.sha256(blob).hexdigest()}
        _atomic_bytes(wpath, blob)
        _atomic_bytes(cpath, (json.dumps(cfg, indent=2) + "\n").encode())
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
        ff = cls(desc, cfg["hidden"], cfg["activation"], cfg["physics"], cfg["provenance"])
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
                 "n_features": int, "physics": dict, "provenance": dict, "weights_sha256": str}


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


def _atomic_bytes(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
