# Two commands do all the set-up: `make app` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO ?= projects/demo

.PHONY: app test lint format bench bench-quick venv clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

app: $(STAMP)
	$(PY) -m wsseg demo --project $(DEMO)
	$(PY) -m wsseg app --project $(DEMO) --address 127.0.0.1 --port 8501

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m wsseg bench --dataset shapes --out bench-out/shapes

bench-quick: $(STAMP)
	$(PY) -m wsseg bench --dataset shapes --quick --out bench-out/shapes-quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
