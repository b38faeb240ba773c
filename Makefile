# Quick start: `make demo` and `make test`. Each sets up .venv itself.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint format bench clean-venv

$(STAMP): pyproject.toml
	@set -e; \
	if [ ! -x $(PY) ]; then \
		PYTHON_BIN=$$(tools/find-python) || exit 1; \
		echo "Creating $(VENV) with $$PYTHON_BIN"; \
		"$$PYTHON_BIN" -m venv $(VENV); \
	fi; \
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true; \
	$(PY) -m pip install -q -e ".[test]"; \
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m screenformula.demo

test: $(STAMP)
	$(VENV)/bin/ruff check screenformula tests benchmarks
	$(VENV)/bin/ruff format --check screenformula tests benchmarks
	$(VENV)/bin/pytest -q

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check screenformula tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format screenformula tests benchmarks
	$(VENV)/bin/ruff check --fix screenformula tests benchmarks

clean-venv:
	rm -rf $(VENV)
