# Two commands do everything on a fresh machine:
#   make study   set up .venv if needed, then run the whole study (target mrm_eval) on the embedded default
#   make test    set up .venv if needed, then run the test suite
# (make docs builds the documentation site into site/)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TARGET ?= mrm_eval
SNAKEMAKE_ARGS ?=
# The step environments `make envs` builds; on a GPU machine add vllm: make envs ENVS="verl vllm"
ENVS ?= verl

export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup envs profile study test test-vllm gpu-check lint dag docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	DS_BUILD_OPS=0 $(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# A venv per step environment (envs/<name>.txt): .venv-verl, .venv-vllm; point `environments.<name>` at its python.
envs: $(foreach env,$(ENVS),.venv-$(env)/.installed)

.venv-%/.installed: envs/%.txt
	$(PYTHON) -m venv .venv-$*
	.venv-$*/bin/pip install --quiet --upgrade pip
	.venv-$*/bin/pip install --quiet -r $<
	touch $@

# `snakemake --profile slurm` from any folder: profiles/slurm linked as ~/.config/snakemake/slurm (or $XDG_CONFIG_HOME)
profile: $(STAMP)
	python -m rmood profile

# `rmood unlock` first: a lock that a killed run left is released, a live run's is not (it says so and stops)
study: $(STAMP)
	python -m rmood unlock
	snakemake --cores all $(TARGET) $(SNAKEMAKE_ARGS)

test: $(STAMP) .venv-verl/.installed
	python -m pytest $(PYTEST_ARGS)

# vLLM's own objects built from our requests, in .venv-vllm (about 9 GB of CUDA wheels, ~10 min to build)
test-vllm: $(STAMP) .venv-vllm/.installed
	python -m pytest tests/test_vllm.py $(PYTEST_ARGS)

# On a GPU node, in minutes: vLLM sampling killed and resumed, 2 verl PPO updates, DeepSpeed ZeRO-2 RM training
# under accelerate launch, bf16 RM training; one PASS/FAIL/SKIP line per item, exit 1 if any FAILs.
# e.g. make gpu-check GPU_CHECK_ARGS="--items bf16 --keep"   (python -m rmood.gpu_check --help)
GPU_CHECK_ARGS ?=
gpu-check: $(STAMP)
	python -m rmood.gpu_check $(GPU_CHECK_ARGS)

lint: $(STAMP)
	snakemake --lint
	snakefmt --check Snakefile rules

dag: $(STAMP)
	snakemake -n --quiet all --rulegraph mermaid-js $(TARGET)

# The documentation site (MkDocs with Material, the API from the docstrings by mkdocstrings) in $(DOCS_SITE), every
# warning an error; the DAG page shows the rule graph `make dag` draws. The tests build it the same way.
DOCS_SITE ?= site
docs: $(STAMP)
	snakemake -n --quiet all --rulegraph mermaid-js $(TARGET) > docs/dag.mmd.tmp
	sed -n '/^---$$/,$$p' docs/dag.mmd.tmp > docs/dag.mmd && rm docs/dag.mmd.tmp
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict --site-dir $(DOCS_SITE)

clean:
	rm -rf results logs benchmarks .snakemake report.html
