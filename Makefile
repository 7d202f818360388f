# The README's two commands: `make run` (set up + run the main job) and `make test` (set up + run the tests).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
STAMP := $(VENV)/.installed

.PHONY: run test lint setup system-deps clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, from the pin (the CPU build here; never several GB of CUDA packages)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	# deepspeed compiles against the installed torch: no build isolation
	$(PIP) install -q -c constraints.txt --no-build-isolation -e '.[train]'
	touch $(STAMP)

setup: $(STAMP)

# Headless Chromium for the MLflow UI screenshot test (Debian packages; needs root or passwordless sudo).
system-deps:
	@dpkg -s chromium fonts-dejavu-core >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; }

# The vlaa_thinker pipeline end to end with kfp.local on the embedded default (see README).
run: $(STAMP)
	$(BIN)/thinkflow run --pipeline vlaa_thinker --root .thinkflow

test: $(STAMP) system-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 tests

clean:
	rm -rf $(VENV) .thinkflow
