# The five images, one target each; build from the repository root (README, "Images"):
#   commit=$(git rev-parse HEAD)
#   docker build --target model-api  --build-arg GIT_COMMIT=$commit -t taxi-model-api .
#   docker build --target training   --build-arg GIT_COMMIT=$commit -t taxi-training .
#   docker build --target scoring    --build-arg GIT_COMMIT=$commit -t taxi-scoring .
#   docker build --target monitoring --build-arg GIT_COMMIT=$commit -t taxi-monitoring .
#   docker build --target streaming  --build-arg GIT_COMMIT=$commit -t taxi-streaming .
# model-api: serves models:/nyc-taxi-duration@champion from the MLflow registry.
# training: `python -m training --train URI --val URI`.
# scoring: `python -m scoring --input URI … --output URI [--shard I/N | --shards N]`.
# monitoring: `python -m monitoring --prediction-log URI [--actuals URI] [--retrain …]`.
# streaming: the stream handler; as is, an AWS Lambda function (streaming.aws_lambda.handler);
#   with the command `python -m streaming.push`, the Pub/Sub push service on Cloud Run.
# Each target copies only the packages it runs (tests/integration/test_entrypoints.py checks it).

# --- base: the OS, the user and the environment every image shares ----------------------------
FROM python:3.11-slim AS base

# LightGBM needs the OpenMP runtime.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 app

# GIT_PYTHON_REFRESH: MLflow asks GitPython for a commit, and the image has no git (GIT_COMMIT
# says which commit it was built from instead).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    GIT_PYTHON_REFRESH=quiet \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
COPY pyproject.toml uv.lock ./

# --- jobs: what training, scoring and monitoring share ----------------------------------------
FROM base AS jobs

# Only the jobs' dependency group (runtime), exactly as locked: no deployment tooling, no
# MLflow server, no dev tools; the libraries' own test suites are dropped.
RUN pip install --no-cache-dir uv==0.13.9 \
    && uv sync --frozen --no-default-groups --group runtime --no-install-project --no-cache \
    && pip uninstall -y uv \
    && find /opt/venv/lib -depth -type d -name tests -path "*/site-packages/*" -exec rm -rf {} +

# --- training ---------------------------------------------------------------------------------
FROM jobs AS training

# The job and what it stands on: the model's core (trip_model: the features it trains on, the
# TLC columns it reads), storage, the tracking CA.
COPY trip_model ./trip_model
COPY storage ./storage
COPY tracking_ca ./tracking_ca
COPY training ./training
ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=$GIT_COMMIT

USER 10001:10001
ENTRYPOINT ["python", "-m", "training"]
CMD ["--help"]

# --- scoring ----------------------------------------------------------------------------------
FROM jobs AS scoring

# The job and what it stands on: the model's core (trip_model), storage, the tracking CA.
COPY trip_model ./trip_model
COPY storage ./storage
COPY tracking_ca ./tracking_ca
COPY scoring ./scoring
ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=$GIT_COMMIT

USER 10001:10001
ENTRYPOINT ["python", "-m", "scoring"]
CMD ["--help"]

# --- monitoring -------------------------------------------------------------------------------
FROM jobs AS monitoring

# The job and what it stands on: the model's core (trip_model), storage, the tracking CA.
COPY trip_model ./trip_model
COPY storage ./storage
COPY tracking_ca ./tracking_ca
COPY monitoring ./monitoring
ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=$GIT_COMMIT

USER 10001:10001
ENTRYPOINT ["python", "-m", "monitoring"]
CMD ["--help"]

# --- model-api --------------------------------------------------------------------------------
FROM base AS model-api

RUN install -d -o app -g app /tmp/prometheus
ENV UVICORN_HOST=0.0.0.0 \
    UVICORN_PORT=8000 \
    UVICORN_WORKERS=2 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

# Only this image's dependency group (api), exactly as locked: no deployment tooling, no
# MLflow server, no dev tools; the libraries' own test suites are dropped.
RUN pip install --no-cache-dir uv==0.13.9 \
    && uv sync --frozen --no-default-groups --group api --no-install-project --no-cache \
    && pip uninstall -y uv \
    && find /opt/venv/lib -depth -type d -name tests -path "*/site-packages/*" -exec rm -rf {} +

# The models ship their own feature code (MLflow code_paths), so only the API is copied, and
# the model's core (trip_model: ride limits, the predictor it shares with the scoring job).
COPY services/__init__.py ./services/__init__.py
COPY services/model_api ./services/model_api
COPY trip_model ./trip_model
COPY storage ./storage
COPY tracking_ca ./tracking_ca
ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=$GIT_COMMIT

USER 10001:10001
EXPOSE 8000
# Asks /health on UVICORN_PORT, whatever it is set to at run time.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-m", "services.model_api.healthcheck"]
# One listening socket per worker (SO_REUSEPORT), so connections spread over the workers.
CMD ["python", "-m", "services.model_api.serve"]

# --- streaming --------------------------------------------------------------------------------
FROM base AS streaming

# Only this image's dependency group (streaming: the API's, and AWS Lambda's runtime interface
# client), exactly as locked; the libraries' own test suites are dropped.
RUN pip install --no-cache-dir uv==0.13.9 \
    && uv sync --frozen --no-default-groups --group streaming --no-install-project --no-cache \
    && pip uninstall -y uv \
    && find /opt/venv/lib -depth -type d -name tests -path "*/site-packages/*" -exec rm -rf {} +

# The handler and what it stands on: the model's core (the registry loader, the predictor, the
# prediction log), storage, the tracking CA.
COPY streaming ./streaming
COPY trip_model ./trip_model
COPY storage ./storage
COPY tracking_ca ./tracking_ca
ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=$GIT_COMMIT

USER 10001:10001
# As a Lambda function: the runtime interface client fetches each batch and calls the handler.
# Cloud Run runs `python -m streaming.push` instead (the service's command).
ENTRYPOINT ["python", "-m", "awslambdaric"]
CMD ["streaming.aws_lambda.handler"]
