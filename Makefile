# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench model clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/genrestore demo --out demo-output

test: $(STAMP) system-deps
	$(BIN)/ruff check src tests scripts training
	$(BIN)/python -m pytest -q

# Debian chromium + chromium-driver for the report's browser test, and ffmpeg for the
# reference line of `genrestore bench --speed` (its test).  Installed when missing and running
# as root; otherwise those tests are skipped and say why.
system-deps:
	@if ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && command -v ffmpeg >/dev/null; }; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium chromium-driver ffmpeg >/dev/null; \
	  else echo "note: chromium/chromedriver/ffmpeg missing; the browser and ffmpeg tests will be skipped"; fi; \
	fi

# The learned envelope model's recipe (training/; torch CPU from the test/train extra).
model: $(STAMP)
	$(BIN)/python -m training.recipe

bench: $(STAMP)
	$(BIN)/genrestore bench --speed

clean:
	rm -rf $(VENV) demo-output test-artifacts build *.egg-info src/*.egg-info .pytest_cache
