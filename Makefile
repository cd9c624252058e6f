# The two commands of the README: `make book` and `make test`. Both create the virtual
# environment on first use (Python >= 3.10, pip; CPU-only torch 2.13.0).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Widget JavaScript served from _static so the rendered explorer works offline.
HTML_MANAGER := 1.0.14
REQUIREJS := 2.3.7
WIDGET_JS := _static/embed-amd.js _static/require.js

.PHONY: venv book test check-book clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[book,test,batch]"
	touch $(STAMP)

_static/embed-amd.js:
	mkdir -p _static/.npm
	cd _static/.npm && npm pack -q @jupyter-widgets/html-manager@$(HTML_MANAGER) >/dev/null
	tar -xzf _static/.npm/jupyter-widgets-html-manager-$(HTML_MANAGER).tgz -C _static/.npm
	cp _static/.npm/package/dist/embed-amd.js $@
	cp _static/.npm/package/LICENSE _static/LICENSE.html-manager 2>/dev/null || true
	rm -rf _static/.npm

_static/require.js:
	mkdir -p _static/.npm
	cd _static/.npm && npm pack -q requirejs@$(REQUIREJS) >/dev/null
	tar -xzf _static/.npm/requirejs-$(REQUIREJS).tgz -C _static/.npm
	cp _static/.npm/package/require.js $@
	rm -rf _static/.npm

book: $(STAMP) $(WIDGET_JS)
	$(VENV)/bin/jupyter-book build -W -n --keep-going .

# The README's test command: unit and physics tests, then every chapter executed by nbval.
test: $(STAMP)
	$(PY) -m pytest tests book --nbval-lax -p no:cacheprovider

# Strict nbval over the executed book: the outputs must re-execute to the same values.
check-book: book
	$(PY) -m pytest --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg _build/jupyter_execute/book -p no:cacheprovider

clean:
	rm -rf _build .pytest_cache
