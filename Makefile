# The two commands of the README:
#   make demo   set up .venv, render the embedded demo data, train the tiny acne config on it
#               (unconditional), label its samples with a classifier of the same real faces,
#               and judge the export with a classifier of other real faces
#   make test   set up .venv and run the test suite (what .ci/run runs)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade-strategy only-if-needed -r requirements-dev.txt
	$(BIN)/pip install --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

demo: setup
	$(BIN)/python -m jaxgen demo --workdir runs/demo --set train.total_kimg=20

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf runs .pytest_cache
