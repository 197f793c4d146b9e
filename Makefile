# vemcell: two commands do all the set-up on a fresh machine with Python 3.11.
#   make demo   virtual environment + install + the whole pipeline on the embedded sample
#   make test   virtual environment + test dependencies + lint + the whole test suite

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= demo-output
PIP    := $(BIN)/python -m pip

.PHONY: demo test lint format install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The runtime plus Blender-as-a-module (for the rendered PNG/MP4).
$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[blender]"
	touch $@

# Everything the tests need: runtime, bpy, torch (CPU) for training tests, pytest, ruff.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[dev,blender,train]"
	touch $@

install: $(VENV)/.installed-demo
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/python -m vemcell demo --out $(OUT)

lint: install-dev
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --check --no-cache .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install-dev lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(OUT) build dist .pytest_cache .ruff_cache
