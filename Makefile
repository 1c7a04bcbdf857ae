# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install browsers demo test lint format bench messages clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Renotify needs Python 3.11 or newer"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

## Set up and run web + worker + beat on embedded defaults, with demo data.
demo: install
	DEBUG=1 $(BIN)/python manage.py migrate --noinput
	DEBUG=1 $(BIN)/python manage.py seed_demo
	DEBUG=1 $(BIN)/python manage.py seed_demo_staff
	DEBUG=1 $(BIN)/python manage.py seed_demo_campaign
	DEBUG=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho -f Procfile.demo start

## Debian's chromium for tests/browser (as root; CI runs it). Without it those tests skip.
browsers:
	@test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }
	@/usr/bin/chromium --version 2>/dev/null

## Set up and run the test suite (PostgreSQL + Redis when DATABASE_URL/REDIS_URL are set).
test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Benchmarks (PostgreSQL + Redis, wrk): print figures and write bench/RESULTS.md and
## bench/results.json, never part of `make test`. All of them (about two hours), or one:
## `make bench BENCH=webhooks`; smaller: `make bench SCALE=100000` (members or rows).
bench: install
	@command -v wrk >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; }
	@test -x /usr/bin/time || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y time; }
	$(BIN)/python bench/run.py $(if $(BENCH),--only $(BENCH)) $(if $(SCALE),--scale $(SCALE))

## Maintainers: refresh the de/fr translations after changing UI or email strings.
messages: install
	DEBUG=1 $(BIN)/python manage.py makemessages -l de -l fr --ignore=.venv --ignore=var --ignore=bench --ignore=tests
	DEBUG=1 $(BIN)/python manage.py compilemessages --ignore=.venv

clean:
	rm -rf $(VENV) var
