# make test   -- build .venv (once), install pinned deps, run the suite
# make demo   -- train + evaluate a tiny model on synthetic long-CoT data (CPU, a few minutes)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast demo clean

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

clean:
	rm -rf $(VENV) *.egg-info
