"""The built HTML book, rendered by headless Chromium with every host name unresolvable.

For every page of _toc.yml: the page renders (a title and the article body are in the DOM after
the scripts ran), every figure of the executed notebook is an <img> with a non-empty src that
points to an existing file, and on pages with widget state the widgets are drawn by the locally
served html-manager (one rendered view per widget output), which proves they work offline.

Needs `make book` first (skipped, with that reason, when _build/html does not exist) and Debian's
`chromium` (`make chromium` installs it when running as root).
"""
import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
EXECUTED = ROOT / "_build" / "jupyter_execute"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000",
                  "--dump-dom"]
pytestmark = pytest.mark.skipif(not HTML.is_dir(), reason="no built book: run `make book` first")


def toc_pages() -> list:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for c in toc.get("chapters", [])]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("headless Chromium not found: `apt-get install -y chromium` (or `make chromium`)")


def rendered_dom(page: str) -> BeautifulSoup:
    """DOM of the page after its scripts ran, loaded from file:// with no network."""
    url = (HTML / f"{page}.html").as_uri()
    proc = subprocess.run([chromium(), *CHROMIUM_FLAGS, url], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return BeautifulSoup(proc.stdout, "html.parser")


def notebook_image_count(page: str) -> int:
    """Image outputs in the executed notebook of a page (0 for Markdown pages)."""
    path = EXECUTED / f"{page}.ipynb"
    if not path.exists():
        return 0
    nb = nbformat.read(path, as_version=4)
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if any(k.startswith("image/") for k in o.get("data", {})))


@pytest.fixture(scope="module")
def doms() -> dict:
    return {page: rendered_dom(page) for page in toc_pages()}


@pytest.mark.parametrize("page", toc_pages())
def test_page_renders_with_title_and_body(doms, page):
    article = doms[page].select_one("article.bd-article")
    assert article is not None, f"{page}: no article body in the rendered page"
    title = article.find("h1")
    assert title is not None and title.get_text(strip=True), f"{page}: no title"
    assert len(article.get_text(strip=True)) > 200, f"{page}: article is nearly empty"


@pytest.mark.parametrize("page", toc_pages())
def test_figures_are_images_with_existing_files(doms, page):
    images = doms[page].select("article.bd-article img")
    srcs = [img.get("src", "") for img in images]
    assert all(srcs), f"{page}: an <img> has an empty src"
    base = (HTML / page).parent
    missing = [s for s in srcs if not s.startswith("data:") and not (base / s).resolve().is_file()]
    assert missing == [], f"{page}: images point to missing files"
    assert len(images) >= notebook_image_count(page), f"{page}: figures missing from the page"


def widget_views_in_source(page: str) -> int:
    soup = BeautifulSoup((HTML / f"{page}.html").read_text(), "html.parser")
    return len(soup.find_all("script", type=WIDGET_VIEW))


@pytest.mark.parametrize("page", toc_pages())
def test_widgets_render_offline(doms, page):
    n_views = widget_views_in_source(page)
    dom = doms[page]
    if n_views == 0:
        assert dom.find("script", type=WIDGET_STATE) is None
        return
    scripts = [s.get("src", "") for s in dom.find_all("script") if s.get("src")]
    remote = [s for s in scripts if "://" in s and not s.startswith("file:") and "/mathjax@" not in s]
    assert not remote, f"{page}: scripts loaded from the network (only MathJax may be)"
    drawn = [div for div in dom.select("div.widget-subarea")  # top level: an Output widget nests its own
             if div.select_one(".jupyter-widgets, .lm-Widget") and div.find_parent("div", class_="widget-subarea") is None]
    assert len(drawn) == n_views, f"{page}: {len(drawn)} of {n_views} widget outputs drawn"


def test_widget_state_is_valid_json_where_present():
    """Every widget-state block in the built pages parses and names ipywidgets' own modules."""
    for page in toc_pages():
        soup = BeautifulSoup((HTML / f"{page}.html").read_text(), "html.parser")
        for script in soup.find_all("script", type=WIDGET_STATE):
            state = json.loads(script.string)["state"]
            modules = {m["model_module"] for m in state.values()}
            assert modules <= {"@jupyter-widgets/base", "@jupyter-widgets/controls",
                               "@jupyter-widgets/output"}, f"{page}: third-party widget modules"


def output_widget_models(nb) -> set:
    """Model ids of widgets that are, or contain, an Output widget (from the saved state)."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    children = {mid: set(re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(m["state"])))
                for mid, m in state.items()}
    found = {mid for mid, m in state.items() if m["model_name"] == "OutputModel"}
    grew = True
    while grew:
        parents = {mid for mid, kids in children.items() if kids & found} - found
        found |= parents
        grew = bool(parents)
    return found


def test_output_widget_cells_are_ignored_by_strict_nbval():
    """nbval has no widget manager: what an Output widget captures reaches it as plain stdout,
    so `make check-book` can only pass if such cells carry the tag `nbval-ignore-output`."""
    untagged = []
    for path in sorted(EXECUTED.glob("book/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        captured = output_widget_models(nb)
        for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
            views = {o["data"][WIDGET_VIEW]["model_id"] for o in cell.get("outputs", [])
                     if WIDGET_VIEW in o.get("data", {})}
            if views & captured and "nbval-ignore-output" not in cell.metadata.get("tags", []):
                untagged.append(f"{path.name}: code cell {i}")
    assert untagged == [], "tag these cells 'nbval-ignore-output'"
