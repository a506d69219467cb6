# The two commands of the README, each self-sufficient on a fresh machine:
#   make run    the headline experiment: every method x 3 seeds on Split Fashion-MNIST,
#               two runs at a time, then the report
#   make test   the test suite
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: install data run test lint

install: data
	$(PYTHON) -m pip install -q -e '.[dev]'

# Fashion-MNIST from Debian's package; elsewhere lab-run downloads it with torchvision.
data:
	@if [ ! -d $(FASHION_MNIST) ] && command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi

run: install
	lab-run +ablation=methods hydra/launcher=joblib hydra.launcher.n_jobs=2
	lab-report multirun/methods/split_fmnist_class

test: install lint
	$(PYTHON) -m pytest

lint:
	ruff check . && ruff format --check .
