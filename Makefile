# sancodec: `make test` and `make demo` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf
NODE_EXAMPLE := examples/node/node_modules/.package-lock.json

.PHONY: test lint proto models bench demo clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[server,client,training,dev,bench]"
	touch $@

$(BUF):
	npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error @bufbuild/buf@$(BUF_VERSION)

$(NODE_EXAMPLE): examples/node/package.json examples/node/package-lock.json  ## the Node example's pinned packages
	npm ci --prefix examples/node --no-audit --no-fund --loglevel=error

proto: $(STAMP)  ## regenerate sancodec/v1 from proto/
	$(BIN)/python tools/genproto.py

models: $(STAMP)  ## retrain and re-export the shipped bundles in models/ (fixed seeds)
	$(BIN)/python -m training.shipped --out models

bench: $(STAMP)  ## rate-distortion vs wavelet, DCT, lossless; beats kept; the paper's metric -> docs/benchmarks.md
	$(BIN)/python -m bench.rate_distortion --write-docs
	$(BIN)/python -m bench.clinical --write-docs

lint: $(STAMP) $(BUF)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BUF) lint

test: lint $(NODE_EXAMPLE)
	$(BIN)/python -m pytest

demo: $(STAMP)  ## the main job: server, a real recording streamed, stored, decoded, plotted
	$(BIN)/python tools/demo.py

clean:
	rm -rf $(VENV) .tools examples/node/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
