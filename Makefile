# The README's two commands: `make demo` (generate a video with the shipped tiny model) and `make test`.
# Both set up .venv first if needed (CPU torch from the local wheel, then the package with its dev and ui extras)
# and, for the web page's browser test, Debian's chromium when it is missing (apt-get, as root; no sudo).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium

.PHONY: setup test lint demo bench chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev,ui]"
	touch $(STAMP)

setup: $(STAMP) chromium

# Playwright drives this browser (tests/test_serve.py); without it the browser test is skipped, saying why.
chromium:
	@if [ ! -x $(CHROMIUM) ] && command -v apt-get >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else \
			echo "note: $(CHROMIUM) missing; as root: apt-get install chromium (the browser test is skipped)"; \
		fi; \
	fi

test: $(STAMP) chromium
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

demo: $(STAMP)
	$(BIN)/videoldm generate "a red circle moving right" --output demo.mp4

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all
