# Quick start: `make demo` and `make test`. Each sets up .venv itself (Python >= 3.12,
# found by tools/find-python) and installs the package editable with its test extras.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Only the folders that exist in this checkout (git keeps no empty folder).
SRC := $(wildcard screenformula tests benchmarks)

.PHONY: demo test test-fast lint format clean-venv tutorials

# (Re)create .venv unless it holds a working Python >= 3.12, then install; the stamp
# keeps later runs from reinstalling until pyproject.toml changes.
$(STAMP): pyproject.toml
	@set -e; \
	if ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then \
		PYTHON_BIN=$$(sh tools/find-python) || exit 1; \
		rm -rf $(VENV); \
		echo "Creating $(VENV) with $$PYTHON_BIN"; \
		"$$PYTHON_BIN" -m venv $(VENV); \
	fi; \
	echo "Installing screenformula (editable, with test extras) into $(VENV)"; \
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true; \
	$(PY) -m pip install -q -e ".[test]"; \
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m screenformula.demo

# Test files run on TEST_WORKERS processes (pytest-xdist; one file stays on one worker,
# so its fixtures are built once): most of the suite's time is single-threaded model
# compilation. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(VENV)/bin/ruff check $(SRC)
	$(VENV)/bin/ruff format --check $(SRC)
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile

# Execute every tutorial (tutorials/NN_*.py, jupytext sources) into tutorials/_build/
# (gitignored): the executed notebooks, with their figures, and the files they write.
tutorials: $(STAMP)
	$(PY) tutorials/_execute.py --out tutorials/_build

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check $(SRC)

format: $(STAMP)
	$(VENV)/bin/ruff format $(SRC)
	$(VENV)/bin/ruff check --fix $(SRC)

clean-venv:
	rm -rf $(VENV)
