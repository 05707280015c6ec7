# The two commands of the README.  Both set up everything on a fresh machine (Python 3.11 on PATH):
#   make demo  - run the whole pipeline on the bundled synthetic sample corpus
#   make test  - run the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
# Ignore machine-wide pip configuration (extra indexes, constraints): the lock file is the only truth.
PIP := PIP_CONFIG_FILE=/dev/null $(BIN)/python -m pip

.PHONY: demo test lint install clean

install: $(STAMP)

$(STAMP): requirements.lock requirements-bootstrap.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes --no-deps -r requirements-bootstrap.txt
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/medcurate run

# The report's browser test renders it in Debian's headless Chromium (installed as root when missing).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf medcurate-demo .pytest_cache
