# One-command set-up: `make fit` trains the default model with monitoring, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
ARGS ?=
PYTEST_ARGS ?=

.PHONY: fit test test-fast test-torchvision lint format bench tensorboard clean

# Torch first and pinned (a CPU wheel here; `make fit TORCH=torch` for your platform's build), then the
# package in editable mode. The stamp files make the second run skip the install.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH)"
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -e ".[test,wandb,mlflow]"
	touch $@

# torchvision's video models (tests/models/test_torchvision.py) in a virtual environment of their own: PyPI's
# torchvision wheel over this machine's CPU torch breaks `import torchmetrics` in the environment it lands in.
TV_VENV ?= .venv-torchvision
$(TV_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TV_VENV)
	$(TV_VENV)/bin/python -m pip install --upgrade pip
	$(TV_VENV)/bin/python -m pip install "$(TORCH)"
	$(TV_VENV)/bin/python -m pip install -e ".[test,torchvision]"
	touch $@

test-torchvision: $(TV_VENV)/.installed
	$(TV_VENV)/bin/python -m pytest tests/models/test_torchvision.py $(PYTEST_ARGS)

fit: $(VENV)/.installed
	$(BIN)/python -m lightning_selrel fit $(ARGS)

# The whole suite (slow tests included), as CI runs it.
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit loop: everything but the tests marked slow (trainings, multi-process).
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Style, as CI checks it: ruff's lints and its formatting (`make format` applies the formatting).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check lightning_selrel tests benchmarks
	$(BIN)/ruff format --check lightning_selrel tests benchmarks

format: $(VENV)/.installed-test
	$(BIN)/ruff format lightning_selrel tests benchmarks
	$(BIN)/ruff check --fix lightning_selrel tests benchmarks

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_explain.py
	$(BIN)/python benchmarks/bench_ucf101_cache.py

tensorboard: $(VENV)/.installed
	$(BIN)/python -m tensorboard.main --logdir lightning_logs

clean:
	rm -rf $(VENV) $(TV_VENV) lightning_logs .pytest_cache
