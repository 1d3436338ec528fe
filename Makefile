# shoal: `make demo` runs the bundled demo, `make test` runs the tests.
# Both create the virtualenv and install what they need (Debian packages too, when root).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS := dev,browser,parse,notify

.PHONY: demo test test-fast setup system-deps lint typecheck bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

system-deps:
	@bash scripts/system-deps.sh

setup: system-deps $(VENV)/.installed

demo: setup
	$(BIN)/shoal demo

# Two pytest-xdist workers: many tests wait on politeness delays, leases and subprocesses, so two
# share the two cores well. tests/conftest.py schedules (xdist's default --dist load): a module's
# shared fixture stays on one worker, slow tests go first.
PYTEST := $(BIN)/python -m pytest -n 2

test: setup
	$(PYTEST)

# The quick loop while editing: everything but the tests marked slow (crash recovery, fleets, many workers).
test-fast: setup
	$(PYTEST) -m "not slow"

lint: setup
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) shoal-data .pytest_cache .mypy_cache
