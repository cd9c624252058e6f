"""Headless Chromium, offline, for the built book: the DOM after the scripts ran, layout
measurements of cell outputs, and screenshots (tests/test_html.py, scripts/screenshot_book.py).

Every host name is unresolvable (``--host-resolver-rules``), so a page that needs the network to
render (MathJax or widget scripts from a CDN) shows it. ``--virtual-time-budget`` lets the
page's scripts (MathJax typesetting, the widget manager) finish before the DOM is dumped or the
picture taken.
"""
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# The book to check: this checkout unless SDLIB_BOOK names another built book (a small book in
# a temporary folder shows that the checks of tests/test_html.py fail where they should).
BOOK = Path(os.environ.get("SDLIB_BOOK", ROOT)).resolve()
HTML = BOOK / "_build" / "html"
EXECUTED = BOOK / "_build" / "jupyter_execute"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000",
         "--hide-scrollbars"]
WIDTH, MAX_HEIGHT = 1280, 16000  # a laptop-wide window; Chromium's largest screenshot


def toc_pages() -> list:
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for c in toc.get("chapters", [])]


def page_url(page: str) -> str:
    return (HTML / f"{page}.html").as_uri()


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise FileNotFoundError("headless Chromium not found: `apt-get install -y chromium` (or `make chromium`)")


def _run(*args: str) -> str:
    proc = subprocess.run([chromium(), *FLAGS, *args], capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def dump_dom(url: str) -> str:
    """HTML of the page after its scripts ran, loaded with no network."""
    return _run("--dump-dom", url)


# The page is loaded in an iframe of a local wrapper page, whose script measures it once loaded
# (file:// pages may read each other's DOM with --allow-file-access-from-files) and writes the
# result into its own DOM, which --dump-dom returns.
_WRAPPER = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="page" src="{url}" style="border:0;width:{width}px;height:900px"></iframe>
<script>
const frame = document.getElementById("page");
frame.addEventListener("load", () => setTimeout(() => {{
  const out = {{}};
  try {{
    const doc = frame.contentDocument;
    const pres = [...doc.querySelectorAll("div.cell_output pre")];
    out.outputs = pres.length;
    out.overflowing = pres.filter(p => p.scrollWidth > p.clientWidth + 1)
                          .map(p => p.textContent.trim().split("\\n")[0].slice(0, 100));
    out.height = Math.max(doc.documentElement.scrollHeight, doc.body.scrollHeight);
  }} catch (e) {{ out.error = String(e); }}
  const pre = document.createElement("pre");
  pre.id = "measured";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}}, 500));
</script></body></html>
"""


def measure(url: str, width: int = WIDTH) -> dict:
    """Layout of the page in a window ``width`` px wide: ``outputs`` (number of <pre> in cell
    outputs), ``overflowing`` (the first line of each that is wider than its box, i.e. partly
    hidden) and ``height`` (of the whole page, px)."""
    from bs4 import BeautifulSoup

    with tempfile.TemporaryDirectory() as tmp:
        wrapper = Path(tmp) / "measure.html"
        wrapper.write_text(_WRAPPER.format(url=url, width=width))
        dom = _run("--allow-file-access-from-files", "--dump-dom", wrapper.as_uri())
    found = BeautifulSoup(dom, "html.parser").find("pre", id="measured")
    if found is None:
        raise RuntimeError(f"{url}: the page did not load in the measuring frame")
    out = json.loads(found.get_text())
    if "error" in out:
        raise RuntimeError(f"{url}: {out['error']}")
    return out


def screenshot(url: str, path: Path, width: int = WIDTH) -> int:
    """PNG of the whole page (up to MAX_HEIGHT px) at ``path``; returns the height taken."""
    height = min(max(measure(url, width)["height"], 600), MAX_HEIGHT)
    _run(f"--window-size={width},{height}", f"--screenshot={Path(path).resolve()}", url)
    return height
