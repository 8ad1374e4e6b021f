# Both entry points bootstrap themselves: a fresh clone needs only python3 (3.11+).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit clean

# The compiled modules (setup.py) are rebuilt whenever their sources change: an extension
# module left over from an older source would be imported instead of the new source.
COMPILED := $(shell sed -n 's/^ *"\(src\/tunnelgate\/.*\.py\)",$$/\1/p' setup.py)

# limits.py too: mypyc may build its Final constants into the compiled modules.
$(STAMP): pyproject.toml setup.py $(COMPILED) src/tunnelgate/limits.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tunnelgate server

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy tests/e2e/conftest.py

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) build *.egg-info

# The benchmark (issue 3): nginx, wrk and pagekite come from apt (bench/bootstrap.py installs
# whichever is missing); matplotlib from the bench extra. Not part of `make test`.
.PHONY: bench bench-scale
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.bootstrap
	$(BIN)/python -m bench.run

bench-scale: $(BENCH_STAMP)
	$(BIN)/python -m bench.bootstrap
	$(BIN)/python -m bench.scale
