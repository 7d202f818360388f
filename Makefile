# The README's two commands: `make run` (set up + run the main job) and `make test` (set up + run the tests).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
STAMP := $(VENV)/.installed

.PHONY: run test lint setup clean

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

run: $(STAMP)
	$(BIN)/thinkflow tiny-model .thinkflow/tiny
	$(BIN)/python -c "from PIL import Image, ImageDraw; im = Image.new('RGB', (112, 112), 'white'); d = ImageDraw.Draw(im); [d.ellipse((10 + 30 * i, 40, 34 + 30 * i, 64), fill='red') for i in range(3)]; im.save('.thinkflow/circles.png')"
	$(BIN)/thinkflow ask .thinkflow/tiny --image .thinkflow/circles.png --question "How many red circles are there?"

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 tests

clean:
	rm -rf $(VENV) .thinkflow
