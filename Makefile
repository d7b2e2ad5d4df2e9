# Quick start on a fresh machine:  make demo   (set up, then run the demo)
#                                  make test   (set up, then run the whole test suite)
PY ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
DEMO_SECONDS ?= 60
PYTEST_ARGS ?=

.PHONY: setup test lint lint-fix demo bench bench-ros clean help

help:
	@echo "make setup | make demo [DEMO_SECONDS=60] | make test [PYTEST_ARGS=...] | make lint | make bench | make bench-ros | make clean"

setup: $(STAMP)

$(STAMP): requirements.txt requirements-extras.txt requirements-ros.txt requirements-dev.txt tools/setup_env.sh
	bash tools/setup_env.sh "$(PY)" "$(VENV)"
	@touch $(STAMP)

# Lint runs first (seconds) so its report is on top, but its failure is reported after the tests have run:
# one run shows both. Settings (line length 120, rules) are in pyproject.toml.
test: setup
	@lint=0; $(VPY) -m ruff check . || lint=$$?; \
	$(VPY) -m pytest -q test $(PYTEST_ARGS) || exit $$?; \
	if [ $$lint -ne 0 ]; then echo "make test: tests passed but 'ruff check .' failed (make lint-fix fixes most)"; \
	  exit $$lint; fi

lint: setup
	$(VPY) -m ruff check .

lint-fix: setup
	$(VPY) -m ruff check --fix .

demo: setup
	$(VPY) -m repflow_ros.demo --seconds $(DEMO_SECONDS)

bench: setup
	$(VPY) -m repflow_core.bench

bench-ros: setup
	$(VPY) -m repflow_ros.bench

clean:
	rm -rf $(VENV) build install log .pytest_cache
