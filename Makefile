# Mailhouse: two commands, and a fast one for the edit loop.
#   make serve   - create .venv, install Mailhouse (no test extras), run `mailhouse serve` on the embedded default
#   make test    - install test dependencies (Debian packages + Python), then every gate and every test:
#                  ruff check, ruff format --check, mypy (strict, all of src/), the architecture contract
#                  (lint-imports + tests/architecture: layers, no import cycles), the whole pytest suite
#   make check   - the same gates with only the unit tests that need no server (proto, message, store on
#                  SQLite, config): 26 s on the 2-core dev machine (load average 8 from other work), 45 s
#                  with a cold mypy cache (every gate of it timed, 2026-12-07). No Debian packages needed.
# Each gate is also a target of its own: lint, format-check, typecheck, arch (contract + cycles), unit, pytest.
# With another virtualenv: `PYTHONPATH=$PWD/src make check BIN=/path/to/venv/bin` (nothing is installed then).
PY ?= python3
VENV := .venv
BIN ?= $(VENV)/bin
STAMP := $(VENV)/.installed
# The venv is built only when BIN is ours.
DEPS := $(if $(filter $(VENV)/bin,$(BIN)),$(STAMP))
PYTEST := $(BIN)/pytest -q -p no:cacheprovider
# Unit tests for `make check`: no PostgreSQL, Postfix, Dovecot or DNS server, no Mailhouse process
# (chosen by measurement: about 23 s with tests/architecture; the next cheapest, tests/mailauth and
# tests/cli, need dnsmasq or run `mailhouse` processes: 12 s and 80 s).
UNIT_TESTS := tests/proto tests/message tests/store tests/sieve/test_evaluate.py tests/test_config.py
UNIT_SELECT := -k "not postgres"

.PHONY: serve test check test-deps lint format-check typecheck arch-contract arch unit pytest venv clean

# Two installs into one venv: `serve` needs only Mailhouse and its runtime dependencies (about a
# quarter of the size); the test command adds the test extras (pytest, Playwright, mypy, ...).
SERVE_STAMP := $(VENV)/.installed-serve

$(VENV)/bin/python:
	$(PY) -m venv $(VENV) || { \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-venv python3-dev build-essential && \
	  rm -rf $(VENV) && $(PY) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --upgrade pip

$(SERVE_STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e .
	touch $(SERVE_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP) $(SERVE_STAMP)

venv: $(SERVE_STAMP)

serve: $(SERVE_STAMP)
	$(VENV)/bin/mailhouse serve

# Order matters for a serial make: cheap static gates first. `make -k check` runs them all and
# reports every failure; `make -j2 check` runs them side by side.
test: test-deps lint format-check typecheck arch-contract
	$(PYTEST)

check: lint format-check typecheck arch-contract
	$(PYTEST) tests/architecture $(UNIT_TESTS) $(UNIT_SELECT)

test-deps: $(DEPS)
	bash scripts/install-test-deps.sh

lint: $(DEPS)
	$(BIN)/ruff check src tests bench

format-check: $(DEPS)
	$(BIN)/ruff format --check --output-format concise src tests bench

typecheck: $(DEPS)
	$(BIN)/mypy src

# The architecture contract: layers (import-linter over pyproject.toml [tool.importlinter]) and no
# import cycles in src/ (tests/architecture: every import counted, TYPE_CHECKING ones too).
arch-contract: $(DEPS)
	$(BIN)/lint-imports --no-logo

arch: arch-contract
	$(PYTEST) tests/architecture

unit: $(DEPS)
	$(PYTEST) $(UNIT_TESTS) $(UNIT_SELECT)

pytest: $(DEPS)
	$(PYTEST)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .import_linter_cache
