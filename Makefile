# Two set-up commands on a fresh machine: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: install lint test test-fast docs demo ui bench cluster-test constraints clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "Python >= 3.10 needed (PYTHON=$(PYTHON))"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test]"
	rm -rf airflow_provider_loyalty.egg-info  # build leftover: from the checkout it would list the package twice
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Unit tests, sandbox tests, end-to-end DAG runs; PostgreSQL tests run when LOYALTY_TEST_POSTGRES_URI is set.
# Two processes on a machine with two cores or more (LOYALTY_TEST_SHARDS=1 for one), one coverage report.
test: lint
	$(PY) scripts/run_tests.py $(PYTEST_ARGS)

test-fast: install
	AIRFLOW_HOME=$(CURDIR)/.airflow/test $(PY) -m pytest -m "not e2e" -q $(PYTEST_ARGS)

# The manual (docs/*.md) as a site in site/; --strict turns every warning (a broken link or anchor) into a failure.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

demo: install
	$(PY) scripts/demo.py $(DEMO_ARGS)

# The Reversals page in the Airflow UI over the demo's ledger (run `make demo` first); Ctrl-C stops it.
ui: install
	$(PY) scripts/ui.py $(UI_ARGS)

# A real CeleryExecutor deployment on loopback (PostgreSQL, Redis, api-server, scheduler, dag-processor,
# two workers) runs the fan-out DAG twice, SIGKILLing a worker mid-run; see cluster/README.md.
# Needs the PostgreSQL server binaries and redis-server (apt-get install postgresql redis-server).
cluster-test: install
	$(PY) cluster/run.py $(CLUSTER_ARGS)

# `make bench BENCH_ARGS=--quick` for the smaller sizes; see benchmarks/README.md for the flags.
bench: install
	$(PY) benchmarks/run.py $(BENCH_ARGS)

# Re-pin after changing dependencies: resolves into a scratch venv and writes constraints.txt.
constraints:
	rm -rf .venv-pin && $(PYTHON) -m venv .venv-pin
	.venv-pin/bin/pip install -q "apache-airflow==3.3.2" -e ".[test]"
	.venv-pin/bin/pip freeze --exclude-editable | grep -v '^airflow-provider-loyalty' > constraints.txt
	rm -rf .venv-pin

clean:
	rm -rf $(VENV) .airflow .demo site .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.shard*
