# The two commands a new user runs: `make run` and `make test`. See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv lint typecheck bench bench-scale bench-ocpi soak clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	@mkdir -p var
	$(PY) manage.py compile_translations
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo
	$(PY) -m cpms.launcher

test: $(STAMP)
	@mkdir -p var
	$(PY) manage.py compile_translations
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# mypy with django-stubs: lenient over the whole code, strict on services, selectors, types and the pure
# modules (pyproject.toml [tool.mypy]).
typecheck: $(STAMP)
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) bench/ocpp_ingest.py

# The production layout (servers, worker, beat, PostgreSQL, Redis) under N chargers, open loop (issue 13), e.g.
# make bench-scale N=1000 ARGS='--with-ceiling --commands 1000 --command-rate 20 --storm' (docs/performance.md).
N ?= 200
bench-scale: $(STAMP)
	$(PY) bench/scale.py $(N) $(ARGS)

# The OCPI push path: sweeps, outbox delivery, sync now (docs/performance.md "Roaming pushes (OCPI)").
bench-ocpi: $(STAMP)
	$(PY) bench/ocpi_push.py $(ARGS)

# The embedded mode under simulated chargers for MINUTES, the worker killed halfway (docs/deployment.md).
MINUTES ?= 30
CHARGERS ?= 6
soak: $(STAMP)
	$(PY) bench/soak.py --minutes $(MINUTES) --chargers $(CHARGERS)

clean:
	rm -rf $(VENV) var db.sqlite3
