# The two commands of the README. Each one sets up .venv on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Two cores: one torch thread per process, so that parallel notebooks and tests don't thrash each other.
export OMP_NUM_THREADS ?= 1

.PHONY: study test install clean

$(STAMP): pyproject.toml tools/offline_weights.py
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: set PYTHON=python3.x (3.11 or newer)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python tools/offline_weights.py
	touch $(STAMP)

install: $(STAMP)

study: $(STAMP)
	$(BIN)/fastprune study

SYNC_SUM = find nbs fastprune -type f ! -path '*/__pycache__/*' ! -path '*/.ipynb_checkpoints/*' | LC_ALL=C sort | xargs sha1sum | sha1sum

test: $(STAMP)
	$(BIN)/python tools/offline_weights.py
	@before=$$($(SYNC_SUM)); $(BIN)/nbdev-clean && $(BIN)/nbdev-export || exit 1; \
	if [ "$$before" != "$$($(SYNC_SUM))" ]; then \
	  echo "nbdev-clean / nbdev-export changed files: notebooks and fastprune/ were out of sync"; \
	  git status --short -- nbs fastprune; exit 1; fi
	$(BIN)/nbdev-test --n-workers 2
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) _proc _docs build dist *.egg-info
