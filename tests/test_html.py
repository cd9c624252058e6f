"""The built HTML book, rendered by headless Chromium with every host name unresolvable.

For every page of _toc.yml: the page renders (a title and the article body are in the DOM after
the scripts ran); no script comes from the network; every equation is typeset by the locally
served MathJax (each math element holds MathJax output, none is an error, no raw ``\\(`` or
``\\[`` is left in the text); every Markdown table a cell printed is an HTML <table> (and at
least one page has one); no cell output is wider than its box in a laptop-wide window (long lines
wrap); every figure of the executed notebook is an <img> with a non-empty src that points to an
existing file; and on pages with widget state the widgets are drawn by the locally served
html-manager (one rendered view per widget output), which proves they work offline.

Needs `make book` first (skipped, with that reason, when _build/html does not exist) and Debian's
`chromium` (`make chromium` installs it when running as root). SDLIB_BOOK=<folder> checks
another built book instead (tests/browser.py).
"""
import json
import re

import nbformat
import pytest
from bs4 import BeautifulSoup

from tests import browser
from tests.browser import EXECUTED, HTML, toc_pages

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$", re.M)  # |---|:--:|
RAW_MATH = re.compile(r"\\\(|\\\)|\\\[|\\\]")
RAW_DOLLAR_MATH = re.compile(r"\$[^$\s][^$]*?\$")  # $x$ left as text


def is_raw_table_rule(line: str) -> bool:
    """A Markdown table rule shown as text: |---|---| (the HTML writer may turn --- into an em dash)."""
    line = line.strip()
    return "|" in line and any(d in line for d in "-—–") and set(line) <= set("|-—–: ")
pytestmark = pytest.mark.skipif(not HTML.is_dir(), reason="no built book: run `make book` first")


def rendered_dom(page: str) -> BeautifulSoup:
    """DOM of the page after its scripts ran, loaded from file:// with no network."""
    try:
        return BeautifulSoup(browser.dump_dom(browser.page_url(page)), "html.parser")
    except FileNotFoundError as err:
        pytest.fail(str(err))


def executed_notebook(page: str):
    """The executed notebook of a page (None for a Markdown page without code)."""
    path = EXECUTED / f"{page}.ipynb"
    return nbformat.read(path, as_version=4) if path.exists() else None


def notebook_image_count(page: str) -> int:
    """Image outputs in the executed notebook of a page (0 for Markdown pages)."""
    nb = executed_notebook(page)
    if nb is None:
        return 0
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
def test_no_script_from_the_network(doms, page):
    scripts = [s.get("src", "") for s in doms[page].find_all("script") if s.get("src")]
    remote = [s for s in scripts if "://" in s and not s.startswith("file:")]
    assert not remote, f"{page}: scripts loaded from the network: {remote}"


def text_outside_code(element) -> str:
    """Text of an element without code, code outputs, scripts and widgets (MathJax leaves those
    alone; widgets draw their own labels)."""
    element = BeautifulSoup(str(element), "html.parser")
    for skip in element.select("pre, code, script, style, div.highlight, mjx-container, div.widget-subarea"):
        skip.decompose()
    return element.get_text(" ")


@pytest.mark.parametrize("page", toc_pages())
def test_equations_are_typeset_offline(doms, page):
    article = doms[page].select_one("article.bd-article")
    maths = article.select("span.math, div.math")
    assert maths, f"{page}: no equations on the page"
    raw = [m.get_text()[:80] for m in maths if m.find("mjx-container") is None]
    assert not raw, f"{page}: {len(raw)} of {len(maths)} equations not typeset, e.g. {raw[:3]}"
    errors = [e.get_text()[:80] for e in article.select("mjx-merror, [data-mjx-error]")]
    assert not errors, f"{page}: MathJax errors: {errors[:5]}"
    leftover = RAW_MATH.findall(text_outside_code(article))
    assert not leftover, f"{page}: raw TeX delimiters left in the text: {leftover[:5]}"


def printed_markdown_tables(page: str) -> int:
    """Markdown outputs of the executed notebook that hold a table (a |---| rule)."""
    nb = executed_notebook(page)
    if nb is None:
        return 0
    texts = [o["data"]["text/markdown"] for c in nb.cells if c.cell_type == "code"
             for o in c.get("outputs", []) if "text/markdown" in o.get("data", {})]
    return sum(1 for text in texts if TABLE_RULE.search(text if isinstance(text, str) else "".join(text)))


@pytest.mark.parametrize("page", toc_pages())
def test_markdown_tables_printed_by_cells_are_tables(doms, page):
    outputs = doms[page].select("article.bd-article div.cell_output")
    tables = sum(len(o.find_all("table")) for o in outputs)
    assert tables >= printed_markdown_tables(page), \
        f"{page}: {printed_markdown_tables(page)} Markdown tables printed, {tables} <table>s in the outputs"
    text = "\n".join(text_outside_code(o) for o in outputs)
    raw = [line for line in text.splitlines() if is_raw_table_rule(line)]
    assert not raw, f"{page}: Markdown table rules shown as text: {raw[:3]}"
    dollars = RAW_DOLLAR_MATH.findall(text)
    assert not dollars, f"{page}: $...$ math left as text in printed Markdown: {dollars[:3]}"


def test_some_page_prints_a_markdown_table():
    """The table check above is not vacuous: at least one page (the intro's results) has one."""
    assert sum(printed_markdown_tables(page) for page in toc_pages()) > 0


@pytest.mark.parametrize("page", toc_pages())
def test_cell_outputs_fit_their_box(page):
    """Long printed lines wrap: no <pre> of a cell output is wider than its box (which would hide
    the end of the line, often the number printed) in a window 1280 px wide."""
    measured = browser.measure(browser.page_url(page))
    assert measured["overflowing"] == [], \
        f"{page}: {len(measured['overflowing'])} of {measured['outputs']} outputs run off their box"


def image_widget_count(page: str) -> int:
    """Image widgets in the saved widget state of a page's executed notebook (0 for Markdown pages)."""
    nb = executed_notebook(page)
    if nb is None:
        return 0
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return sum(1 for m in state.values() if m["model_name"] == "ImageModel")


@pytest.mark.parametrize("page", toc_pages())
def test_figures_are_images_with_existing_files(doms, page):
    """Figures of cell outputs are <img>s of files that exist; figures held by Image widgets (the
    explorer's) are drawn by the widget manager from the saved state, as blob: or data: URLs."""
    images = doms[page].select("article.bd-article img")
    by_widget = [img for img in images if "widget-image" in img.get("class", [])]
    files = [img for img in images if "widget-image" not in img.get("class", [])]
    srcs = [img.get("src", "") for img in files]
    assert all(srcs), f"{page}: an <img> has an empty src"
    base = (HTML / page).parent
    missing = [s for s in srcs if not s.startswith("data:") and not (base / s).resolve().is_file()]
    assert missing == [], f"{page}: images point to missing files"
    assert len(files) >= notebook_image_count(page), f"{page}: figures missing from the page"
    assert len(by_widget) == image_widget_count(page), f"{page}: Image widgets not drawn"
    assert all(img.get("src", "").startswith(("blob:", "data:")) for img in by_widget), \
        f"{page}: an Image widget has no image"


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
