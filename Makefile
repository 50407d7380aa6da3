# nbdeploy — `make demo` and `make test` each set up what they need on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: help venv demo test test-fast lint bench ui-deps labextension clean

help:
	@echo "make demo   train, deploy, validate, explain, serve and query a model end to end"
	@echo "make test   install everything the tests need and run the whole suite"
	@echo "make bench  run every benchmark and write BENCHMARKS.md"
	@echo "make lint   ruff"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	NBDEPLOY_HOME=$(CURDIR)/.nbdeploy-demo BENTOML_HOME=$(CURDIR)/.nbdeploy-demo/bentoml $(BIN)/python -m nbdeploy.demo

# Debian's chromium for the real-browser tests (npx playwright install cannot work here).
ui-deps:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || \
	  ( (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	    || echo "chromium could not be installed: the UI tests will fail (NBDEPLOY_REQUIRE_UI=1)" )

# Build the JupyterLab sidebar (production: minified, no source maps; the wheel ships this
# build) and link it into the venv.
labextension: $(STAMP)
	cd labextension && PATH="$(CURDIR)/$(BIN):$$PATH" jlpm install --immutable && PATH="$(CURDIR)/$(BIN):$$PATH" jlpm build:prod
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/jupyter-builder develop --overwrite .

test: $(STAMP) ui-deps labextension
	$(BIN)/ruff check src tests bench
	cd labextension && PATH="$(CURDIR)/$(BIN):$$PATH" jlpm test
	NBDEPLOY_REQUIRE_UI=1 $(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not ui"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) || echo "wrk unavailable: using the Python load generator"
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) build dist .pytest_cache
