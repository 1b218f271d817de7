# The whole setup on a fresh machine: `make run` (main job) and `make test` (full suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Main job: train MDR on the embedded synthetic corpus, print the recall table and one example retrieval.
run: install
	$(VENV)/bin/hf-dialret train --output-dir runs/mdr-synthetic

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

clean:
	rm -rf $(VENV) runs build src/*.egg-info
