# API + pipeline image: the FastAPI service (default command), the DVC pipeline (`dvc repro`,
# ./retraining_run.sh) and the MLflow tracking server (docker/app/mlflow-server.sh) share it.
#
#   docker build -t accidents-api .                                      # anywhere
#   docker build --build-arg BASE_IMAGE=accidents-base:local -t accidents-api .
#                                      # no registry: base from scripts/docker/build_base_image.sh
#
# The project lives at /app exactly as in a checkout (src/, api/, dvc.yaml, params.yaml,
# retraining_run.sh), with its virtualenv at /app/.venv (on PATH). Pipeline outputs (data/,
# models/, the DVC cache) are meant to be named volumes (docker-compose.yml).
ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------- builder
# The first lines of this stage are the same in docker/airflow/Dockerfile: the pipeline venv
# is built once and reused from the build cache.
FROM ${BASE_IMAGE} AS builder
ARG UV_VERSION=0.13.9
# Bytecode compiled at install time (MLflow and Airflow start in ~12 s instead of 90-100 s when
# PYTHONDONTWRITEBYTECODE=1); no caches in any layer; the system CA store (which holds the
# extra CAs of scripts/docker/build_base_image.sh) for pip and uv.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_NATIVE_TLS=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"
WORKDIR /app
COPY requirements.txt docker/requirements-postgres.txt /tmp/requirements/
RUN /opt/uv/bin/uv venv --quiet --python python3 /app/.venv \
 && /opt/uv/bin/uv pip install --quiet --python /app/.venv/bin/python \
      -r /tmp/requirements/requirements.txt -r /tmp/requirements/requirements-postgres.txt
# The project itself, editable as in a checkout: the venv points at /app/src and /app/api.
COPY pyproject.toml README.md /app/
COPY src /app/src
COPY api /app/api
RUN /opt/uv/bin/uv pip install --quiet --python /app/.venv/bin/python --no-deps -e /app \
 && rm -rf /app/src/*.egg-info

# ---------------------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime
ARG APP_UID=10001
ENV PATH=/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    ACCIDENTS_PROJECT_DIR=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DVC_NO_ANALYTICS=1 \
    GIT_PYTHON_REFRESH=quiet \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    HOME=/home/app
# One UID for every image that writes the shared volumes (the Airflow image uses it too).
RUN groupadd --gid "${APP_UID}" app \
 && useradd --uid "${APP_UID}" --gid app --create-home --home-dir /home/app --shell /bin/bash app
WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY --chown=app:app . /app
# Writable state the volumes mount over (a fresh named volume takes this ownership), the DVC
# settings of the image (no git inside: core.no_scm; default remote on the dvc-remote volume),
# the project's own bytecode.
RUN mkdir -p data models reports state .dvc/cache .dvc/tmp /srv/dvc-remote /mlflow/artifacts \
 && cp docker/app/dvc-config.local .dvc/config.local \
 && python3 -m compileall -q src api \
 && chown app:app /app \
 && chown -R app:app /app/data /app/models /app/reports /app/state /app/.dvc /srv/dvc-remote /mlflow \
 && chmod 0755 /app/docker/app/*.sh /app/retraining_run.sh
USER app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", "--forwarded-allow-ips", "*"]
