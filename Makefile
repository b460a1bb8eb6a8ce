# One-command entry points. `make run` and `make test` install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run demo up test lint bench clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-train.txt requirements-local.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## The main job on the embedded default: start the local stack, upload the bank-marketing file, follow
## it to a deployed model, keep serving until Ctrl-C.
run: install
	$(BIN)/retrain run

## The same once, non-interactively; the last line is a JSON summary.
demo: install
	$(BIN)/retrain demo

up: install
	$(BIN)/retrain up

## In random order (pytest-randomly; the seed is in the header: repeat a run with -p randomly --randomly-seed=N).
test: install
	bash .ci/install-chromium
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf .local
