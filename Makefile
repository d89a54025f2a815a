# The two commands of the README. Each creates .venv if missing and installs lucidrl into it.
# On this kind of machine the CPU build of torch 2.13.0 lies on disk and is installed first, so
# pip does not fetch a multi-GB CUDA build; elsewhere set TORCH_SPEC (e.g. TORCH_SPEC=torch).
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test install clean docs lint typecheck

demo: $(VENV)/.installed
	$(VENV)/bin/lucidrl train ppo --env CartPole-v1 --seed 0

test: $(VENV)/.installed
	$(PY) -m pytest -q

install: $(VENV)/.installed

# The documentation site, from docs/ and the README (mkdocs.yml), into site/; strict: a broken link, a missing page
# or a bad docstring reference fails the build. Installs the `docs` extra into .venv first (no torch needed).
docs:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "mkdocs>=1.6.1" "mkdocs-material>=9.8" "mkdocstrings[python]>=1.0.8" "pymdown-extensions>=10.7"
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The gates of .ci/run and .pre-commit-config.yaml ([tool.ruff] and [tool.mypy] in pyproject.toml)
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check lucidrl tests benchmarks experiments
	$(VENV)/bin/ruff format --check lucidrl tests benchmarks experiments

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV) runs build site *.egg-info
