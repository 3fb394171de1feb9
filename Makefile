# make demo: set up and run the embedded demo.  make test: set up and run the tests.
VENV ?= .venv

.PHONY: setup demo test test-fast clean-data

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/curate run --demo

test: setup
	$(VENV)/bin/python -m pytest -q

test-fast: setup
	$(VENV)/bin/python -m pytest -q -m "not slow"

clean-data:
	rm -rf data/lake data/export data/prefect
