# make demo: set up and run the embedded demo.  make test: set up and run the tests.
VENV ?= .venv

.PHONY: setup demo test test-fast clean-data

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/curate run --demo

# Two workers (pytest-xdist): the slow tests wait on servers and engines a good part of the time.
# --dist loadfile keeps a module's tests, and its shared fixtures, on one worker.
test: setup
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile

test-fast: setup
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile -m "not slow"

clean-data:
	rm -rf data/lake data/export data/prefect
