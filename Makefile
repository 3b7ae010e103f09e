# The two commands of the README. Each one sets up .venv on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# One torch thread per process and one process per core, so that parallel notebooks and tests don't thrash each other.
export OMP_NUM_THREADS ?= 1
# Cores this process may use; `nproc` alone would count OMP_NUM_THREADS, which is 1 in recipes.
CORES = env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc
NPROC ?= $(shell $(CORES))

.PHONY: study test install clean docs readme browser-test wheel-test

$(STAMP): pyproject.toml tools/offline_weights.py
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: set PYTHON=python3.x (3.11 or newer)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python tools/offline_weights.py
	touch $(STAMP)

install: $(STAMP)

# The study is one process: it gets every core.
study: $(STAMP)
	OMP_NUM_THREADS=$$($(CORES)) $(BIN)/fastprune study

SYNC_SUM = find nbs fastprune -type f ! -path '*/__pycache__/*' ! -path '*/.ipynb_checkpoints/*' | LC_ALL=C sort | xargs sha1sum | sha1sum

test: $(STAMP)
	$(BIN)/python tools/offline_weights.py
	@before=$$($(SYNC_SUM)); $(BIN)/nbdev-clean && $(BIN)/nbdev-export || exit 1; \
	if [ "$$before" != "$$($(SYNC_SUM))" ]; then \
	  echo "nbdev-clean / nbdev-export changed files: notebooks and fastprune/ were out of sync"; \
	  git status --short -- nbs fastprune; exit 1; fi
	$(BIN)/nbdev-test --n-workers $(NPROC)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(NPROC)

# The site, into docs/: every notebook executed (cached in _docs_cache/ until it or the library changes), rendered without quarto.
docs: $(STAMP)
	$(BIN)/python tools/docs.py --n-workers $(NPROC)

# README.md from nbs/index.ipynb, executed (shares the docs cache).
readme: $(STAMP)
	$(BIN)/python tools/readme.py

# The built site in headless Chromium (Debian: chromium chromium-driver); not part of `make test`, run by CI (.ci/run).
browser-test: docs
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/browser

# The wheel, installed into a fresh venv without the dev extra; not part of `make test` (minutes: it installs PyTorch), run by CI.
wheel-test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/packaging

clean:
	rm -rf $(VENV) _proc _docs _docs_cache build dist *.egg-info docs/*.html docs/tutorials docs/assets docs/style.css
