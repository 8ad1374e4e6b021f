# Both entry points bootstrap themselves: a fresh clone needs only python3 (3.11+).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A second, interpreted install (TUNNELGATE_PURE_PYTHON=1) for one more run of the e2e tests.
PURE_VENV := .venv-pure
PURE_STAMP := $(PURE_VENV)/.installed
PURE_TREE := $(PURE_VENV)/tree

.PHONY: run test lint typecheck unit e2e-pure test-packages clean fuzz

# The compiled modules are listed once, in src/tunnelgate/compiled.py (setup.py and the test
# suite read it too). They are rebuilt whenever their sources change: an extension module left
# over from an older source would be imported instead of the new source. -I: the script's
# directory (the package, whose module names may shadow the standard library's) is kept off
# sys.path.
COMPILED_LIST := src/tunnelgate/compiled.py
COMPILED := $(shell $(PYTHON) -I $(COMPILED_LIST))
ifeq ($(strip $(COMPILED)),)
$(error cannot read the compiled modules: `$(PYTHON) -I $(COMPILED_LIST)` printed nothing)
endif

# limits.py too: mypyc may build its Final constants into the compiled modules. Extension
# modules are deleted first: one whose module has left the list would shadow its source.
$(STAMP): pyproject.toml setup.py $(COMPILED_LIST) $(COMPILED) src/tunnelgate/limits.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	find src -name '*.so' -delete
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Not editable: an editable install would import the compiled modules sitting next to the
# sources. It is installed from a copy of the tree without them, so it shares no build
# directory with the compiled install, and reinstalled when any source changes.
$(PURE_STAMP): pyproject.toml setup.py README.md $(shell find src -name '*.py')
	test -d $(PURE_VENV) || $(PYTHON) -m venv $(PURE_VENV)
	$(PURE_VENV)/bin/pip install --quiet --upgrade pip
	rm -rf $(PURE_TREE) && mkdir -p $(PURE_TREE)
	cp -R pyproject.toml setup.py README.md src $(PURE_TREE)/
	find $(PURE_TREE) \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
	TUNNELGATE_PURE_PYTHON=1 $(PURE_VENV)/bin/pip install --quiet '$(PURE_TREE)[dev]'
	rm -rf $(PURE_TREE)
	touch $(PURE_STAMP)

run: $(STAMP)
	$(BIN)/tunnelgate server

lint: $(STAMP)
	$(BIN)/ruff check src tests bench fuzz
	$(BIN)/ruff format --check src tests bench fuzz
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy tests/e2e/conftest.py

# The tests' own Debian packages (pebble, the ACME test CA: tests/gateway/test_acme_pebble.py;
# nftables and iproute2: tests/e2e/test_blackhole.py, which runs as root in a network namespace),
# installed with apt-get if missing; the tests start their own copies on loopback ports.
test-packages:
	$(PYTHON) -m bench.bootstrap tests

unit: $(STAMP) test-packages
	$(BIN)/pytest

# The e2e tests that drive every compiled module's main paths (HTTP semantics and framing,
# errors and cut-offs, TCP and TLS, tunnels' lifecycle, the cluster link), once more on the
# interpreted install: TUNNELGATE_PURE_PYTHON=1 tells the test suite's guard
# (tests/conftest.py) to insist that nothing listed is compiled. Not all of tests/e2e: the
# whole of it twice no longer fits CI's 15 minutes on two cores, and the rest (timers,
# floods, processes) does not depend on how the code was built.
PURE_E2E := tests/e2e/test_tunnels.py tests/e2e/test_http_semantics.py \
	tests/e2e/test_conformance.py tests/e2e/test_tcp_tunnels.py tests/e2e/test_cut_off.py \
	tests/e2e/test_errors.py tests/e2e/test_cluster_forwarding.py
e2e-pure: $(PURE_STAMP) test-packages
	TUNNELGATE_PURE_PYTHON=1 $(PURE_VENV)/bin/pytest -p no:cacheprovider $(PURE_E2E)

test: lint typecheck unit e2e-pure

clean:
	rm -rf $(VENV) $(PURE_VENV) $(FUZZ_VENV) .fuzz build *.egg-info

# The benchmark (issue 3): nginx, wrk and pagekite come from apt (bench/bootstrap.py installs
# whichever is missing); matplotlib from the bench extra. Not part of `make test`.
.PHONY: bench bench-scale bench-tcp bench-reconnect tls-scan
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.bootstrap
	$(BIN)/python -m bench.run

# Only the TCP rows (issue 9) and the metrics on/off row (issue 10), about 2 minutes:
# bench/results/phases.{md,json} (latest.* is left to whole runs).
bench-tcp: $(BENCH_STAMP)
	$(BIN)/python -m bench.bootstrap
	$(BIN)/python -m bench.run --only tcp,metrics

bench-scale: $(BENCH_STAMP)
	$(BIN)/python -m bench.bootstrap
	$(BIN)/python -m bench.scale

# 500 tunnel clients (one process, the real client code), the gateway killed with -9 and
# restarted on its port after 0, 10 and 30 s: when each client came back (issue 11 item 3;
# docs/reliability.md). About 2.5 minutes, never more than 400 s:
# bench/results/reconnect-burst.{md,json}. Not part of `make test`.
bench-reconnect: $(STAMP)
	$(BIN)/python -m bench.reconnect_burst

# testssl.sh (apt) against a gateway's --https listener on loopback (issue 8; docs/tls.md):
# bench/results/tls-scan.{md,json}. About 1.5 minutes; each scan is cut off after 5. Not part
# of `make test`.
tls-scan: $(STAMP)
	$(BIN)/python -m bench.bootstrap tls-scan
	$(BIN)/python -m bench.tls_scan

# The atheris targets (issue 11; fuzz/README.md, docs/reliability.md): each runs on the
# interpreted install (atheris sees no branch inside a mypyc extension), for FUZZ_SECONDS or
# FUZZ_RUNS, whichever ends first, from its committed corpus (fuzz/corpus/<target>). New
# inputs and crashes go to .fuzz/; a crash fails the run. FUZZ_MERGE=1 folds the inputs
# that found new coverage into the committed corpus. Not part of `make test`.
FUZZ_VENV := .venv-fuzz
FUZZ_STAMP := $(FUZZ_VENV)/.installed
FUZZ_TREE := $(FUZZ_VENV)/tree
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= 1000000
FUZZ_TARGETS ?= frames control mux http_request http_response hosts clienthello

$(FUZZ_STAMP): pyproject.toml setup.py README.md $(shell find src -name '*.py')
	test -d $(FUZZ_VENV) || $(PYTHON) -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/pip install --quiet --upgrade pip
	rm -rf $(FUZZ_TREE) && mkdir -p $(FUZZ_TREE)
	cp -R pyproject.toml setup.py README.md src $(FUZZ_TREE)/
	find $(FUZZ_TREE) \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
	TUNNELGATE_PURE_PYTHON=1 $(FUZZ_VENV)/bin/pip install --quiet '$(FUZZ_TREE)[fuzz]'
	rm -rf $(FUZZ_TREE)
	touch $(FUZZ_STAMP)

fuzz: $(FUZZ_STAMP)
	TUNNELGATE_PURE_PYTHON=1 $(FUZZ_VENV)/bin/python fuzz/run.py --seconds $(FUZZ_SECONDS) \
		--runs $(FUZZ_RUNS) $(if $(filter 1,$(FUZZ_MERGE)),--merge) $(FUZZ_TARGETS)

# The soak (issue 11 item 6; docs/reliability.md, "Soak"): the gateway, 20 tunnel clients and a
# checking app as real processes, 2,000 keep-alive connections from 8 addresses for 10 minutes
# with seeded, checked bodies both ways, clients killed (-9, SIGTERM) and restarted, one
# gateway drain-restart; fails on any corrupted, lost or unexplained request or on RSS or
# descriptors growing past their bounds. Stops by itself (hard deadline: the duration + 5
# minutes). SOAK_ARGS="--duration 120" shortens it. bench/results/soak.{json,md,svg}.
# Not part of `make test`.
.PHONY: soak
SOAK_ARGS ?=

soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)
