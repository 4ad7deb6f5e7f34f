# make test   -- build .venv (once), install pinned deps, run the suite
# make demo   -- train + evaluate a tiny model on synthetic long-CoT data (CPU, a few minutes)
# make demo-sweep -- a real CPU study (accuracy vs training samples) and its report
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# The demos log to W&B offline (files under the run dir) unless you set WANDB_MODE yourself.
export WANDB_MODE ?= offline

.PHONY: install test test-fast demo demo-sweep clean

install: $(STAMP)

# torch is installed first and pinned: a bare `torch` would pull a multi-GB CUDA build,
# and deepspeed's sdist build needs torch present.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest tests

test-fast: install
	$(PY) -m pytest tests -m "not slow"

demo: install
	$(PY) -m reasoning_sft.train experiment=demo

DEMO_SWEEP := outputs/train/multiruns/tiny_sample_count/make-demo-sweep
demo-sweep: install
	rm -rf $(DEMO_SWEEP)
	$(PY) -m reasoning_sft.train -m --config-dir sweeps --config-name tiny_sample_count hydra.sweep.dir=$(DEMO_SWEEP)
	$(PY) -m reasoning_sft.report $(DEMO_SWEEP)

clean:
	rm -rf $(VENV) *.egg-info
