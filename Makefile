# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/genrestore demo --out demo-output

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/genrestore bench --speed

clean:
	rm -rf $(VENV) demo-output build *.egg-info src/*.egg-info .pytest_cache
