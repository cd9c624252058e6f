"""Screenshot every page of the built book in headless Chromium with no network.

Usage (from the repository root, after ``make book`` and with Debian's ``chromium``)::

    .venv/bin/python scripts/screenshot_book.py OUT_DIR [--width 1280] [--book FOLDER]

writes ``OUT_DIR/<page>.png`` for each page of ``_toc.yml`` (e.g. ``OUT_DIR/book/04_triangular_coarsening.png``),
the whole page in a window ``--width`` px wide (up to 16000 px tall), after its scripts ran
(``--virtual-time-budget=5000``): MathJax has typeset the equations and the widgets are drawn,
from the files served with the book only. ``--book`` is another built book (default: this
checkout). The pictures are for looking at, not committed. The browser calls live in
``tests/browser.py``, which tests/test_html.py uses too.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the PNG files (created)")
    parser.add_argument("--width", type=int, default=1280, help="window width in px (default 1280)")
    parser.add_argument("--book", type=Path, default=ROOT, help="root of a built book (default: this checkout)")
    args = parser.parse_args(argv)
    if args.width < 320:
        parser.error("--width must be at least 320 px")
    os.environ["SDLIB_BOOK"] = str(args.book.resolve())
    sys.path.insert(0, str(ROOT))
    from tests import browser  # reads SDLIB_BOOK on import

    if not browser.HTML.is_dir():
        parser.error(f"no built book in {browser.HTML}: run `make book` first")
    for page in browser.toc_pages():
        target = args.out / f"{page}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        height = browser.screenshot(browser.page_url(page), target, width=args.width)
        print(f"{target}  ({args.width} x {height} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
