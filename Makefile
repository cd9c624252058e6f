# The two commands of the README: `make book` and `make test`. Both create the virtual
# environment on first use (Python >= 3.10, pip; CPU-only torch 2.13.0).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Widget JavaScript served from _static/widgets so the rendered explorer works offline.
HTML_MANAGER := 1.0.14
REQUIREJS := 2.3.7
WIDGET_JS := _static/widgets/embed-amd.js _static/widgets/require.js
# MathJax (one self-contained file: TeX input with every extension, SVG output, no web fonts), so
# that equations are typeset offline. It lives in _mathjax/, not _static/: jupyter-book adds every
# .js file under _static to every page, which would load MathJax twice; _config.yml serves the
# file from _static (html_static_path) and points mathjax_path at it.
MATHJAX := 3.2.2
MATHJAX_JS := _mathjax/tex-svg-full.js

# Kernels: the venv first, so that the `python3` kernel is this environment's Python.
export JUPYTER_PATH := $(CURDIR)/$(VENV)/share/jupyter
export PYDEVD_DISABLE_FILE_VALIDATION := 1
NBVAL := --nbval-current-env --nbval-cell-timeout=900

.PHONY: venv book test check-book chromium clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[book,test,batch]"
	touch $(STAMP)

_static/widgets/embed-amd.js:
	mkdir -p _static/.npm _static/widgets
	cd _static/.npm && npm pack -q @jupyter-widgets/html-manager@$(HTML_MANAGER) >/dev/null
	tar -xzf _static/.npm/jupyter-widgets-html-manager-$(HTML_MANAGER).tgz -C _static/.npm
	cp _static/.npm/package/dist/embed-amd.js $@
	cp _static/.npm/package/LICENSE _static/widgets/LICENSE.html-manager 2>/dev/null || true
	rm -rf _static/.npm

_static/widgets/require.js:
	mkdir -p _static/.npm _static/widgets
	cd _static/.npm && npm pack -q requirejs@$(REQUIREJS) >/dev/null
	tar -xzf _static/.npm/requirejs-$(REQUIREJS).tgz -C _static/.npm
	cp _static/.npm/package/require.js $@
	rm -rf _static/.npm

$(MATHJAX_JS):
	rm -rf _mathjax/.npm && mkdir -p _mathjax/.npm
	cd _mathjax/.npm && npm pack -q mathjax@$(MATHJAX) >/dev/null
	tar -xzf _mathjax/.npm/mathjax-$(MATHJAX).tgz -C _mathjax/.npm package/LICENSE package/es5/tex-svg-full.js
	cp _mathjax/.npm/package/LICENSE _mathjax/mathjax-LICENSE.txt
	cp _mathjax/.npm/package/es5/tex-svg-full.js $@
	rm -rf _mathjax/.npm

book: $(STAMP) $(WIDGET_JS) $(MATHJAX_JS)
	$(VENV)/bin/jupyter-book build -W -n --keep-going .

# The README's test command: unit and physics tests and every chapter under nbval (lax), then the
# rendered book: built, re-executed under strict nbval, and its HTML checked in headless Chromium.
test: $(STAMP)
	$(PY) -m pytest tests book --nbval-lax $(NBVAL) -p no:cacheprovider --ignore=tests/test_html.py --ignore=book/runs
	$(MAKE) check-book

# Strict nbval over the executed book (outputs must re-execute identically up to
# tests/nbval_sanitize.cfg), then the HTML pages in headless Chromium with no network.
check-book: book chromium
	$(PY) -m pytest --nbval $(NBVAL) --nbval-sanitize-with tests/nbval_sanitize.cfg \
		_build/jupyter_execute/book tests/test_html.py -p no:cacheprovider

# Headless Chromium for tests/test_html.py: installed from Debian when missing (as root).
chromium:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "Chromium is missing: install it with 'sudo apt-get install -y chromium'" >&2; exit 1; fi

clean:
	rm -rf _build .pytest_cache
