# make demo  - create .venv, install tformer, run the demo
# make test  - create .venv, install tformer with the dev extras, run the test suite
# make mutation - apply deliberate bugs to a copy of src/ one at a time; each must make its tests fail
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# On machines that carry a local CPU build of torch 2.13.0, use it (a plain `torch` could pull a multi-GB CUDA
# build); elsewhere pip resolves the project's normal `torch>=2.4`.
LOCAL_TORCH := $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl)

.PHONY: demo test lint mutation install install-dev clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/activate pyproject.toml
ifneq ($(LOCAL_TORCH),)
	$(PIP) install -q torch==2.13.0
endif
	$(PIP) install -q -e '.[viz]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e '.[dev,viz]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/tformer demo

test: install-dev
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

mutation: install-dev
	$(PY) benchmarks/mutation_check.py

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
