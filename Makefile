# The commands the README gives. `make install` needs python3.11 and either uv or pip.
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null)
UV_RUN := $(if $(UV),uv,python3.11 -m uv)

.PHONY: help install test test-no-servers test-infra lint format demo demo-down demo-status benchmark clean-local

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: ## create .venv with every dependency, pinned by uv.lock, bytecode compiled
ifdef UV
	uv sync --frozen --compile-bytecode --python python3.11
else
	python3.11 -m pip install --quiet uv
	python3.11 -m uv sync --frozen --compile-bytecode --python python3.11
endif
	@# The tests install the tracking VM's environment offline, from uv's cache: its wheels are
	@# there now; resolving it once caches the index pages `uv pip sync --offline` also reads.
	@for group in server-aws server-gcp; do \
	  $(PY) -m infra.vm_requirements $$group > $(VENV)/vm-$$group.txt && \
	  $(UV_RUN) pip compile -q --no-header --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_39 $(VENV)/vm-$$group.txt -o /dev/null || exit 1; \
	done

test: ## the full test suite, real PostgreSQL/moto/MLflow included (what CI runs)
	$(PY) -m pytest

test-no-servers: ## all but the integration tests: no PostgreSQL, moto_server or mlflow server (~3.5 min)
	$(PY) -m pytest -m "not integration"

test-infra: ## only the Pulumi program tests (mocks, cloud-init schema)
	$(PY) -m pytest tests/infra

lint: ## ruff, hadolint (Dockerfiles), shellcheck (shell scripts), actionlint (workflows)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint training/Dockerfile services/model_api/Dockerfile scoring/Dockerfile monitoring/Dockerfile
	$(VENV)/bin/shellcheck .ci/run scripts/deploy scripts/destroy scripts/preview scripts/smoke infra/vm_bootstrap.sh infra/acme_deploy_hook.sh
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/actionlint .github/workflows/*.yml

format: ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: ## the whole platform on this machine; prints URLs and a sample prediction
	$(PY) -m scripts.local_platform up

demo-down: ## stop every process `make demo` started; keep the data in .local/
	$(PY) -m scripts.local_platform down

demo-status: ## which local components are running
	$(PY) -m scripts.local_platform status

benchmark: ## model API vs `mlflow models serve`, scoring job vs `mlflow.pyfunc`; writes docs/benchmarks.md
	$(PY) -m scripts.benchmark
	$(PY) -m scripts.benchmark_scoring
