"""Matplotlib figures used by the chapters. Only drawing: every number comes from the library.

Values may be tensors on any device, NumPy arrays or lists (tensors are copied to the CPU first).
"""
from __future__ import annotations

from fractions import Fraction

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import ListedColormap

from .lattice import Lattice

__all__ = ["plot_lattice", "plot_spins", "plot_dos", "plot_phase_diagram", "plot_site_field", "plot_triangle_field",
           "plot_power_laws"]

STATE_COLORS = {"FM": "#d62728", "Neel": "#1f77b4", "stripe": "#2ca02c", "120": "#9467bd", "tetrahedral": "#ff7f0e"}


def _numpy(x) -> np.ndarray:
    """A NumPy array of a tensor on any device (detached), an array or a list."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _axes(ax):
    return ax if ax is not None else plt.subplots(figsize=(4, 4))[1]


def _inner_bonds(lat: Lattice, pairs: np.ndarray) -> np.ndarray:
    """Segments [n, 2, 2] of the pairs that do not wrap around the torus."""
    pos = lat.positions.numpy()
    seg = pos[pairs]
    keep = np.linalg.norm(seg[:, 1] - seg[:, 0], axis=-1) < 1.5
    return seg[keep]


def plot_lattice(lat: Lattice, ax=None, triangles: bool = True, labels: bool = False):
    """Sites, nearest-neighbour bonds and (triangular lattice) shaded up triangles."""
    ax = _axes(ax)
    pos = lat.positions.numpy()
    if triangles and len(lat.triangles):
        tri = pos[lat.triangles.numpy()[: lat.n_sites]]
        ok = np.ptp(tri[..., 0], axis=1) < 1.5
        ax.add_collection(PolyCollection(tri[ok], facecolor="#fde0c5", edgecolor="none"))
    ax.add_collection(LineCollection(_inner_bonds(lat, lat.bonds.numpy()), colors="0.4", lw=1))
    ax.scatter(pos[:, 0], pos[:, 1], s=18, c="k", zorder=3)
    if labels:
        for i, (x, y) in enumerate(pos):
            ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_aspect("equal")
    ax.set_title(f"{lat.kind} {lat.L}×{lat.L}")
    ax.axis("off")
    return ax


def plot_spins(lat: Lattice, spins, ax=None, title=None):
    """In-plane arrows (S_x, S_y) at the sites, colour = S_z."""
    ax = _axes(ax)
    s = _numpy(spins)
    pos = lat.positions.numpy()
    ax.add_collection(LineCollection(_inner_bonds(lat, lat.bonds.numpy()), colors="0.85", lw=0.8))
    q = ax.quiver(pos[:, 0], pos[:, 1], s[:, 0], s[:, 1], s[:, 2], cmap="coolwarm", clim=(-1, 1),
                  pivot="middle", scale=1.6, scale_units="xy", width=0.012)
    ax.scatter(pos[:, 0], pos[:, 1], c=s[:, 2], cmap="coolwarm", vmin=-1, vmax=1, s=14, zorder=3)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return q


def plot_dos(energies, curves: dict, ax=None, mu=None, title=None):
    """DOS curves ``{label: values}`` against energy; a dashed line at μ."""
    ax = _axes(ax)
    for label, values in curves.items():
        colour = STATE_COLORS.get(label, "k" if "random" in label else None)
        ax.plot(_numpy(energies), _numpy(values), label=label, color=colour, lw=1.3)
    if mu is not None:
        ax.axvline(mu, color="k", ls="--", lw=1, label="μ")
    ax.set_xlabel("energy ε / t")
    ax.set_ylabel("DOS per site and spin orbital")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def plot_phase_diagram(names, winner, Js, mus, ax=None, title=None):
    """Winning ordered state on the (μ, J) grid, one colour per state."""
    ax = _axes(ax)
    cmap = ListedColormap([STATE_COLORS.get(n, "0.5") for n in names])
    extent = (mus[0], mus[-1], Js[0], Js[-1])
    ax.imshow(_numpy(winner), origin="lower", aspect="auto", extent=extent, cmap=cmap,
              vmin=-0.5, vmax=len(names) - 0.5, interpolation="nearest")
    for k, n in enumerate(names):
        ax.plot([], [], "s", color=STATE_COLORS.get(n, "0.5"), label=n)
    ax.set_xlabel("chemical potential μ / t")
    ax.set_ylabel("coupling J / t")
    ax.legend(fontsize=8, loc="upper left", framealpha=0.9)
    if title:
        ax.set_title(title)
    return ax


def plot_site_field(lat: Lattice, values, ax=None, cmap="RdBu_r", vmin=None, vmax=None, title=None):
    """Colour map of a site field (e.g. the bond field φ_i) at the site positions."""
    ax = _axes(ax)
    pos = lat.positions.numpy()
    size = max(2.0, 3.2e4 / lat.n_sites)
    im = ax.scatter(pos[:, 0], pos[:, 1], c=_numpy(values), cmap=cmap, vmin=vmin, vmax=vmax, s=size, marker="s", lw=0)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return im


def plot_triangle_field(lat: Lattice, values, ax=None, cmap="PuOr", vmin=-0.77, vmax=0.77, title=None):
    """Colour map of a triangle field (e.g. the scalar chirality χ) on the elementary triangles."""
    ax = _axes(ax)
    pos = lat.positions.numpy()
    tri = pos[lat.triangles.numpy()]
    # unwrap periodic triangles so that each is drawn where its first vertex sits
    L = lat.L
    shifts = np.array([[a, b] for a in (-1, 0, 1) for b in (-1, 0, 1)]) @ (L * lat.basis)
    for k in (1, 2):
        d = tri[:, k][:, None, :] + shifts[None] - tri[:, 0][:, None, :]
        tri[:, k] = tri[:, 0] + d[np.arange(len(tri)), np.linalg.norm(d, axis=-1).argmin(1)]
    coll = PolyCollection(tri, array=_numpy(values), cmap=cmap, edgecolor="none")
    coll.set_clim(vmin, vmax)
    ax.add_collection(coll)
    ax.autoscale_view()
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return coll


def plot_power_laws(ax, t, L, t0, exponents=(1.0, 0.5), styles=("-", "--", ":"), color="k"):
    """Guides L(t0) (t / t0)^n from the first time t >= ``t0`` to the last, one per exponent n.

    The guides start at the data point where a fit starts (not at t = 0), so a reader compares
    slopes where the fit is made. Labels read "∝ t^n".
    """
    t, L = _numpy(t).astype(float), _numpy(L).astype(float)
    after = np.flatnonzero((t >= t0) & (t > 0))
    if len(after) < 2:
        raise ValueError(f"t0 = {t0} leaves fewer than two positive times to draw guides over")
    k = after[0]
    tt = np.geomspace(t[k], t[after[-1]], 20)
    for n, style in zip(exponents, styles * len(exponents)):
        q = Fraction(n).limit_denominator(12)
        label = "∝ t" if q == 1 else f"∝ t^{q}" if abs(float(q) - n) < 1e-9 else f"∝ t^{n:g}"
        ax.plot(tt, L[k] * (tt / t[k]) ** n, style, color=color, lw=1, label=label)
