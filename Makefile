# The two commands of the README, each self-sufficient on a fresh machine:
#   make run    the headline experiment: every method x 3 seeds on Split Fashion-MNIST,
#               two runs at a time, then the report
#   make test   lint and the test suite
#   make docs   the manual (docs/, MkDocs) into site/, offline, strict: a warning fails it
#   make notebook  run examples/quickstart.ipynb (on Split digits, seconds)
# Both first make the project's own virtual environment, .venv, and install the project
# into it. Only the venv is ever installed into, so they work with the system python3 of
# Debian and Ubuntu (PEP 668 refuses pip outside a venv), a pyenv or conda Python, and
# inside an already active venv (.venv is made from its base Python).
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist
INSTALLED := $(VENV)/.installed

# lab-run, lab-report, pytest and ruff are the venv's, also in the tests' subprocesses
export PATH := $(BIN):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
unexport PYTHONPATH PYTHONHOME

.PHONY: run test lint install system docs notebook

run: $(INSTALLED)
	$(BIN)/lab-run +ablation=methods hydra/launcher=joblib hydra.launcher.n_jobs=2
	$(BIN)/lab-report multirun/methods/split_fmnist_class

# a pytest-xdist worker per core, at most 4 (each holds torch, ~0.5 GB, and starts
# lab-run processes of its own): the suite is mostly independent lab-run processes; work
# stealing and the slow tests first (tests/conftest.py) keep both workers busy to the end
test: lint
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist worksteal

lint: $(INSTALLED)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# Material's notice about its successor is not a warning of this build
docs: $(INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# executed in a scratch copy (the notebook in git keeps no outputs), on the venv's kernel
notebook: $(INSTALLED)
	$(BIN)/python scripts/run_notebook.py examples/quickstart.ipynb

install: $(INSTALLED)

# What only the system's package manager gives: Fashion-MNIST (Debian's
# dataset-fashion-mnist; elsewhere lab-run downloads it with torchvision) and, where
# Debian/Ubuntu ship it apart from Python, the venv module (python3.X-venv).
system:
	@missing=""; \
	if [ ! -d $(FASHION_MNIST) ]; then missing="dataset-fashion-mnist"; fi; \
	if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then \
		missing="$$missing python$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"; \
	fi; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null; then \
			echo "installing with apt-get:$$missing"; \
			$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
		else \
			echo "no apt-get here; missing:$$missing (Fashion-MNIST is then downloaded by torchvision)"; \
		fi; \
	fi

$(BIN)/python: | system
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "error: $(PYTHON) cannot make a venv (no ensurepip); install your system's venv package for it, or run make PYTHON=/path/to/python3" >&2; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)

# uv installs the project about 3x faster than pip; pip does it where uv cannot be had.
# Both compile the packages' bytecode at install: where PYTHONDONTWRITEBYTECODE is set (as
# in many containers and CI images) nothing is cached at import, and every lab-run process
# would compile torch, scikit-learn and transformers from source again (15-20 s each).
$(INSTALLED): pyproject.toml | $(BIN)/python
	@if $(BIN)/python -m pip install -q --disable-pip-version-check uv; then \
		echo "installing the project into $(VENV) with uv"; \
		$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev,docs]' || { \
			echo "uv failed (above); installing with pip instead"; \
			$(BIN)/python -m pip install -q -e '.[dev,docs]'; }; \
	else \
		echo "installing the project into $(VENV) with pip"; \
		$(BIN)/python -m pip install -q --upgrade pip && $(BIN)/python -m pip install -q -e '.[dev,docs]'; \
	fi
	$(BIN)/python -m pip check
	@touch $@
