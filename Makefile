# Two commands on a fresh machine: `make demo` and `make test`. Everything else is here too.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp

.PHONY: demo test lint check e2e bench crds clean

$(STAMP): pyproject.toml setup.py constraints.txt operator/mongo_backup/engine/_bson_walk.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# constraints.txt pins every version CI was green with: resolution is instant and repeatable
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Azurite (the Azure Blob emulator) comes from npm; without Node the Azure tests skip and say so.
$(NODE_STAMP): package.json
	@if command -v npm >/dev/null; then npm install --no-audit --no-fund --silent && touch $(NODE_STAMP); \
	else echo "npm not found: Azure Blob tests will be skipped"; fi

# The demo and the test stand-ins live in demo/, beside the product: never in the wheel.
demo: $(STAMP)
	PYTHONPATH=demo $(BIN)/python -m mongo_backup_demo

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check operator demo tests bench
	$(BIN)/ruff format --check operator demo tests bench
	$(BIN)/mypy

check: test lint

crds: $(STAMP)
	$(BIN)/mongo-backup crds --out crds/
	cp crds/*.yaml helm/mongo-backup-operator/crds/
	cp crds/*.yaml manifests/crds/

e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e -m e2e -v

bench: $(STAMP)
	$(BIN)/python bench/bench_engine.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .demo .bench
