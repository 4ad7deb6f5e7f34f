# make test   -- build .venv (once), install pinned deps, run the suite (every behaviour; 23-24 min on the 2-core AMD EPYC of 2026-12-07)
# make test-slow -- the learning checks (the demo's level, the CPU studies), the heavier benchmark smoke tests,
#                   the SLURM tests (a one-node cluster they start: root, apt-get), the whole released-output re-grades
# make demo   -- train + evaluate a tiny model on synthetic long-CoT data (CPU, 15-30 min)
# make demo-sweep -- a real CPU study (accuracy vs training samples) and its report
# make demo-ablation -- a CPU ablation study (digit corruption 0 / 1.0 on the demo task) and its report
# make demo-budget -- s1's test-time scaling curve on the demo model: accuracy vs thinking tokens
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LCB    := nvidia-livecodebench==26.3

# The demos log to W&B offline (files under the run dir) unless you set WANDB_MODE yourself.
export WANDB_MODE ?= offline
# DeepSpeed's JIT-built CPU ops (its shared-memory collectives, ~40 s to build) cached with this venv: a
# cache shared with another checkout is rebuilt whenever the other one builds (its paths differ).
export TORCH_EXTENSIONS_DIR ?= $(abspath $(VENV))/torch_extensions

.PHONY: install install-vllm test test-slow test-slurm test-fast lint demo demo-sweep demo-ablation demo-budget clean

install: $(STAMP)

# torch is installed first and pinned: a bare `torch` would pull a multi-GB CUDA build,
# and deepspeed's sdist build needs torch present.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	# LiveCodeBench's grading code (testing_util needs only numpy); --no-deps skips its API clients
	$(PY) -m pip install --quiet --no-deps $(LCB)
	# grading profile qwen_math: sympy's LaTeX parser needs antlr 4.11, which Hydra's 4.9 cannot share a
	# process with; its own folder, put on the path of the harness's grading process alone
	$(PY) -m pip install --quiet --no-deps --target $(VENV)/antlr4-4.11 antlr4-python3-runtime==4.11.1
	# DeepSpeed's shared-memory collectives for CPU ranks, built once here (~40 s) instead of in the first run
	$(PY) -c "from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder; ShareMemCommBuilder().load()" >/dev/null
	touch $(STAMP)

# vLLM (the CPU build here, the CUDA build where torch sees a GPU) into the same venv: .ci/install-vllm says how
install-vllm: $(VENV)/.vllm-installed
$(VENV)/.vllm-installed: $(STAMP) .ci/install-vllm
	.ci/install-vllm $(PY)
	touch $@

# Two passes: the tests that start several training ranks use every core, so they run one at a time;
# so do vLLM's (tests/evaluation/test_vllm.py; they skip, saying so, until `make install-vllm`);
# the others two at a time, a test file per worker, each process on one thread (two workers whose
# processes each spin an OpenMP pool over both cores ran the same training 3-6x slower, measured).
test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -m "not learning and not benchmark and not slurm and not fidelity and not ranks and not vllm" -n 2 --dist loadfile
	$(PY) -m pytest tests -m "(ranks or vllm) and not learning and not benchmark and not slurm and not fidelity"

# Two lanes at once, each process on one thread, of about the same length: the demo's training (its four
# epochs, ~40 min on one core of a 2-core EPYC beside make test: the longest single run of the suite), the tests
# that use its model, then the SLURM tests on one (lines prefixed "demo|"); the CPU studies, the benchmark
# smokes and the whole re-grades on the other, at a lower priority (nice 5) so that whatever runs beside
# (CI runs `make test` at the same time) goes first. Two one-thread trainings share 2 cores 1.2x faster than
# one on both (200 demo steps: 70 s alone on 2 threads, 114 s each side by side, the same losses to the last digit).
SLOW      := learning or benchmark or slurm or fidelity
SLOW_LANE := tests/test_demo.py tests/training/test_slurm.py
test-slow: SHELL := /bin/bash
test-slow: install
	set -o pipefail; \
	( OMP_NUM_THREADS=1 $(PY) -m pytest $(SLOW_LANE) -m "$(SLOW)" 2>&1 | sed -u 's/^/demo| /' ) & lane=$$!; \
	OMP_NUM_THREADS=1 nice -n 5 $(PY) -m pytest tests -m "$(SLOW)" $(SLOW_LANE:%=--ignore=%); rest=$$?; \
	wait $$lane; demo=$$?; echo "test-slow: demo lane exit $$demo, other lane exit $$rest"; \
	test $$rest -eq 0 && test $$demo -eq 0

# SLURM's tests alone (they start a one-node cluster: root, apt-get; tests/slurm/cluster.sh)
test-slurm: install
	$(PY) -m pytest tests -m slurm

lint: install
	$(PY) -m ruff check reasoning_sft tests benchmarks

test-fast: install
	$(PY) -m pytest tests -m "not slow and not learning and not benchmark and not slurm and not fidelity"

demo: install
	$(PY) -m reasoning_sft.train experiment=demo

DEMO_SWEEP := outputs/train/multiruns/tiny_sample_count/make-demo-sweep
demo-sweep: install
	rm -rf $(DEMO_SWEEP)
	$(PY) -m reasoning_sft.train -m --config-dir sweeps --config-name tiny_sample_count hydra.sweep.dir=$(DEMO_SWEEP)
	$(PY) -m reasoning_sft.report $(DEMO_SWEEP)

DEMO_ABLATION := outputs/train/multiruns/tiny_digit_corruption/make-demo-ablation
demo-ablation: install
	rm -rf $(DEMO_ABLATION)
	$(PY) -m reasoning_sft.train -m --config-dir sweeps --config-name tiny_digit_corruption hydra.sweep.dir=$(DEMO_ABLATION)
	$(PY) -m reasoning_sft.report $(DEMO_ABLATION)

# The demo model is trained once (as `make demo`) into a fixed dir, then evaluated at each thinking cap.
DEMO_MODEL  := outputs/train/runs/demo/make-demo-budget
DEMO_BUDGET := outputs/evaluate/multiruns/demo/make-demo-budget
demo-budget: install
	test -f $(DEMO_MODEL)/final_model/reasoning_sft.json || \
	  $(PY) -m reasoning_sft.train experiment=demo hydra.run.dir=$(DEMO_MODEL)
	rm -rf $(DEMO_BUDGET)
	$(PY) -m reasoning_sft.evaluate -m model_path=$(DEMO_MODEL)/final_model experiment_name=demo \
	  eval.budget_forcing.enabled=true eval.budget_forcing.max_thinking_tokens=8,16,32,64,256 \
	  hydra.sweep.dir=$(DEMO_BUDGET)
	$(PY) -m reasoning_sft.report $(DEMO_BUDGET)

clean:
	rm -rf $(VENV) *.egg-info
