"""The J/μ explorer, driven headlessly: a slider change recomputes the right energies."""
import io

import matplotlib
import matplotlib.image

matplotlib.use("Agg")

import pytest  # noqa: E402

from sdlib.electrons import ordered  # noqa: E402
from sdlib.explore import Explorer, explorer  # noqa: E402


def test_slider_changes_recompute_energies_and_winner():
    box = explorer("triangular", J=2.0, mu=-2.42, size=24)
    ex = box.explorer
    assert ex.result["winner"] == min(ex.result["energies"], key=ex.result["energies"].get)
    assert ex.result["energies"] == ordered.compare("triangular", 2.0, mu=-2.42, size=24)
    before = dict(ex.result["energies"])
    box.controls["J"].value = 7.0  # the widget callback runs on the value change
    after = ex.result["energies"]
    assert ex.result["J"] == 7.0
    assert after == ordered.compare("triangular", 7.0, mu=-2.42, size=24)
    assert after != before
    box.controls["mu"].value = -12.0  # deep in the lower band: ferromagnet
    assert ex.result["winner"] == "FM"
    box.controls["kind"].value = "square"
    assert set(ex.result["energies"]) == set(ordered.STATES["square"])
    assert "lowest ordered state: FM" in box.children[1].value


def test_explorer_states_differ_between_regimes():
    ex = Explorer("square", J=6.0, mu=-6.2, size=24)
    near_half = ex.update(mu=-0.5)["winner"]
    low_density = ex.update(mu=-9.5)["winner"]
    assert (near_half, low_density) == ("Neel", "FM")
    fig = ex.figure()
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="kind"):
        ex.update(kind="honeycomb")


def widget_tree(widget):
    """The widget and every widget below it."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from widget_tree(child)


def test_explorer_figure_is_an_image_redrawn_on_change_and_no_output_widget():
    """The figure is PNG bytes in an Image widget and changes with the parameters; no Output widget
    anywhere in the box (headless executors imitate one by sending on the shell socket, which can
    lose a cell's reply and hang papermill and jupyter-book: see `sdlib.explore.explorer`)."""
    import ipywidgets as W

    box = explorer("triangular", J=2.0, mu=-2.42, size=24)
    assert not any(isinstance(w, W.Output) for w in widget_tree(box))
    png = bytes(box.image.value)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and box.image.format == "png"
    img = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert img.shape[0] > 100 and img.shape[1] > 2 * img.shape[0]  # the 9 x 3.4 inch figure
    box.controls["J"].value = 5.0
    assert bytes(box.image.value) != png
