"""Interactive J/μ explorer: ordered-state energies and densities of states of the s-d model.

``explorer()`` returns an ipywidgets box (sliders for J and μ, a lattice choice) whose callback
recomputes the grand potential per site Ω/N of every ordered state of
:mod:`sdlib.electrons.ordered` at (J, μ), redraws their DOS with μ marked, and names the winner.
The callback is :meth:`Explorer.update`, a plain method that tests drive without a browser.
"""
from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np

from .electrons import ordered
from .plotting import STATE_COLORS, plot_dos

__all__ = ["Explorer", "explorer", "figure_png"]

DEFAULTS = {"square": (6.0, -6.2), "triangular": (2.0, -3.0)}


class Explorer:
    """State of the explorer: lattice kind, J, μ, and the last result."""

    def __init__(self, kind: str = "triangular", J: float | None = None, mu: float | None = None,
                 size: int = 48, broadening: float = 0.08):
        if kind not in ordered.STATES:
            raise ValueError(f"kind must be 'square' or 'triangular', got {kind!r}")
        J0, mu0 = DEFAULTS[kind]
        self.kind, self.J, self.mu = kind, J0 if J is None else float(J), mu0 if mu is None else float(mu)
        self.size, self.broadening = int(size), float(broadening)
        self.result: dict = {}
        self.update()

    def update(self, J: float | None = None, mu: float | None = None, kind: str | None = None) -> dict:
        """Recompute at new parameters; returns ``{"kind", "J", "mu", "energies", "winner"}``."""
        if kind is not None and kind not in ordered.STATES:
            raise ValueError(f"kind must be 'square' or 'triangular', got {kind!r}")
        self.kind = kind or self.kind
        self.J = self.J if J is None else float(J)
        self.mu = self.mu if mu is None else float(mu)
        e = ordered.compare(self.kind, self.J, mu=self.mu, size=self.size)
        self.result = {"kind": self.kind, "J": self.J, "mu": self.mu, "energies": e, "winner": min(e, key=e.get)}
        return self.result

    def figure(self):
        """DOS of every state with μ marked, and the bar chart of Ω/N (winner outlined)."""
        r = self.result
        half = (6 if self.kind == "triangular" else 4) + abs(self.J) + 0.5  # Gershgorin: z·t + |J|
        w = np.linspace(-half, half, 600)
        curves = {n: ordered.dos(n, self.kind, self.J, w, self.broadening, size=self.size) for n in r["energies"]}
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [2, 1]})
        plot_dos(w, curves, ax=a, mu=self.mu, title=f"{self.kind}: J = {self.J:.2f}, μ = {self.mu:.2f}")
        names = list(r["energies"])
        vals = [r["energies"][n] for n in names]
        bars = b.bar(names, vals, color=[STATE_COLORS.get(n) for n in names])
        bars[names.index(r["winner"])].set_edgecolor("k")
        bars[names.index(r["winner"])].set_linewidth(2.5)
        lo, hi = min(vals), max(vals)
        b.set_ylim(lo - 0.1 * (hi - lo + 1e-3), hi + 0.1 * (hi - lo + 1e-3))
        b.set_ylabel("Ω / N")
        b.set_title(f"lowest: {r['winner']}")
        b.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        return fig


def figure_png(ex: Explorer, dpi: int = 90) -> bytes:
    """The explorer's figure as PNG bytes (the figure is closed)."""
    fig = ex.figure()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def explorer(kind: str = "triangular", J: float | None = None, mu: float | None = None, size: int = 48):
    """The widget: J and μ sliders, a lattice dropdown, and the redrawn figure.

    The figure is an ``Image`` widget holding PNG bytes, not an ``Output`` widget. A headless
    executor (nbclient, under papermill, jupyter-book and the chapter tests) imitates an Output
    widget by sending a message on the kernel's shell socket for every output it captures, while
    the same client waits on that socket for the cell's ``execute_reply``; that send can swallow
    the wake-up of the wait, and the execution then hangs with the kernel idle. An Image widget
    sends nothing back, and its bytes are saved in the notebook's widget state, so the rendered
    book shows the figure too.
    """
    import ipywidgets as W

    ex = Explorer(kind, J, mu, size)
    J_s = W.FloatSlider(value=ex.J, min=0.0, max=10.0, step=0.1, description="J / t", continuous_update=False)
    mu_s = W.FloatSlider(value=ex.mu, min=-16.0, max=16.0, step=0.05, description="μ / t", continuous_update=False)
    kind_d = W.Dropdown(options=list(ordered.STATES), value=ex.kind, description="lattice")
    label = W.HTML()
    image = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))

    def redraw(*_):
        r = ex.update(J_s.value, mu_s.value, kind_d.value)
        label.value = f"<b>lowest ordered state: {r['winner']}</b> (Ω/N = {r['energies'][r['winner']]:.5f})"
        image.value = figure_png(ex)

    for w in (J_s, mu_s, kind_d):
        w.observe(redraw, names="value")
    redraw()
    box = W.VBox([W.HBox([kind_d, J_s, mu_s]), label, image])
    box.explorer = ex  # the state behind the widget, for tests and scripting
    box.controls = {"J": J_s, "mu": mu_s, "kind": kind_d}
    box.image = image
    return box
