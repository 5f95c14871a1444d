# The commands the README gives. Each target that needs the environment makes it first (python3.11
# is all it needs: uv comes from PyPI when missing), so on a fresh clone `make demo` and `make test`
# are the only commands to type.
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
# The environment as of the last install; remade when the lock or the project file changes.
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null)
UV_RUN := $(if $(UV),uv,python3.11 -m uv)

.PHONY: help install test test-unit test-no-servers test-infra test-tools lint format demo demo-roll demo-down demo-status backup restore benchmark

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

define install_venv
	@$(if $(UV),,python3.11 -m uv --version >/dev/null 2>&1 || python3.11 -m pip install --quiet "uv==$(UV_VERSION)")
	$(UV_RUN) sync --frozen --compile-bytecode --python python3.11
	@# The tests install the tracking VM's environment offline, from uv's cache: its wheels are
	@# there now; resolving it once caches the index pages `uv pip sync --offline` also reads.
	@for group in server-aws server-gcp; do \
	  $(PY) -m infra.vm_requirements $$group > $(VENV)/vm-$$group.txt && \
	  $(UV_RUN) pip compile -q --no-header --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_39 $(VENV)/vm-$$group.txt -o /dev/null || exit 1; \
	done
	@touch $(STAMP)
endef

install: ## create .venv with every dependency, pinned by uv.lock (the other targets do it when needed)
	$(install_venv)

$(STAMP): pyproject.toml uv.lock
	$(install_venv)

test-tools: ## what only the system provides for the tests (PostgreSQL with SSL, HAProxy): apt as root, else the command to run
	@scripts/ensure-test-tools

test: $(STAMP) test-tools lint ## lint, then the full test suite, real PostgreSQL/moto/MLflow included (what CI runs)
	$(PY) -m pytest -n 2 --dist loadfile

test-unit: $(STAMP) ## tests/unit: in this process only, no interpreter or server started
	$(PY) -m pytest -n 2 tests/unit

test-no-servers: $(STAMP) test-tools ## all but the integration tests: no PostgreSQL, moto_server or mlflow server
	$(PY) -m pytest -m "not integration"

test-infra: $(STAMP) test-tools ## only the Pulumi program tests (mocks)
	$(PY) -m pytest tests/infra

lint: $(STAMP) ## ruff, hadolint (Dockerfile), shellcheck (shell scripts), actionlint (workflows)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/shellcheck .ci/run scripts/deploy scripts/destroy scripts/preview scripts/smoke scripts/vm-image scripts/renew-cert infra/vm_bootstrap.sh infra/acme_deploy_hook.sh scripts/ensure-test-tools
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/actionlint .github/workflows/*.yml

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

TRACKING_REPLICAS ?= 1
demo: $(STAMP) ## the whole platform on this machine; prints URLs and a sample prediction (TRACKING_REPLICAS=2: two servers behind HAProxy)
	$(PY) -m scripts.local_platform up --replicas $(TRACKING_REPLICAS)

demo-roll: $(STAMP) ## replace the replicated tracking servers one at a time, as the clouds do (after make demo TRACKING_REPLICAS=2)
	$(PY) -m scripts.local_platform roll

demo-down: $(STAMP) ## stop every process `make demo` started; keep the data in .local/
	$(PY) -m scripts.local_platform down

demo-status: $(STAMP) ## which local components are running, and which PostgreSQL (system or embedded)
	$(PY) -m scripts.local_platform status

backup: $(STAMP) ## back up the local platform's databases to its bucket (pg_dump); prints the key
	$(PY) -m scripts.local_platform backup

restore: $(STAMP) ## restore a backup into the local platform: make restore BACKUP=backups/<time>-<reason>
	@test -n "$(BACKUP)" || { echo "usage: make restore BACKUP=<key printed by make backup>" >&2; exit 2; }
	$(PY) -m scripts.local_platform restore "$(BACKUP)"

benchmark: $(STAMP) ## model API vs `mlflow models serve`, scoring job vs `mlflow.pyfunc`, stream handler vs the course's Lambda, tracking server with vs without auth; writes docs/benchmarks.md
	$(PY) -m scripts.benchmark
	$(PY) -m scripts.benchmark_scoring
	$(PY) -m scripts.benchmark_streaming
	$(PY) -m scripts.benchmark_tracking
