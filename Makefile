# Mailhouse: two commands.
#   make serve   - create .venv, install Mailhouse, run `mailhouse serve` on the embedded default
#   make test    - install test dependencies (Debian packages + Python), lint, type-check, run all tests
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint typecheck pytest venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || { \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-venv python3-dev build-essential && \
	  rm -rf $(VENV) && $(PY) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

serve: $(STAMP)
	$(BIN)/mailhouse serve

test: $(STAMP)
	bash scripts/install-test-deps.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src/mailhouse/proto src/mailhouse/store
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) build *.egg-info
