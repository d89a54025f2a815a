# The two commands of the README. Each creates .venv if missing and installs lucidrl into it.
# On this kind of machine the CPU build of torch 2.13.0 lies on disk and is installed first, so
# pip does not fetch a multi-GB CUDA build; elsewhere set TORCH_SPEC (e.g. TORCH_SPEC=torch).
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test install clean

demo: $(VENV)/.installed
	$(VENV)/bin/lucidrl train ppo --env CartPole-v1 --seed 0

test: $(VENV)/.installed
	$(PY) -m pytest -q

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV) runs build *.egg-info
