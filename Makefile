# Two entry points: `make demo` (solve the example captchas, then serve the page)
# and `make test` (every test, as CI runs it). Both set up what they need.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
SHARED  ?= $(abspath ../shared/real-kcaptcha)
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup-solve setup-dev web-build browser lint

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Solving needs onnxruntime, numpy and Pillow only (+ FastAPI for `kcaptcha serve`).
setup-solve: $(BIN)/python
	$(BIN)/pip install -q -e '.[serve]'

# Training and tests: the CPU build of torch first (pinned; any other version pulls CUDA).
setup-dev: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'

web-build:
	npm ci --no-audit --no-fund
	npm run build

# Debian's Chromium for the browser tests, and a TrueType font for `kcaptcha fonts build`'s test.
browser:
	@if ! command -v chromium > /dev/null || [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf ]; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core > /dev/null; \
	fi

demo: setup-solve web-build
	$(BIN)/kcaptcha models
	$(BIN)/kcaptcha solve src/kcaptcha_solver/web/examples/*.jpg src/kcaptcha_solver/web/examples/*.png
	$(BIN)/kcaptcha web

lint:
	$(BIN)/ruff check src tests benchmarks tools setup.py

test: setup-dev web-build browser lint
	KCAPTCHA_SHARED=$(SHARED) $(BIN)/pytest -q
