# Every Python image of the project, as build targets of one Dockerfile:
#
#   api      the FastAPI service (default command), the DVC pipeline (`dvc repro`,
#            ./retraining_run.sh) and the MLflow tracking server (docker/app/mlflow-server.sh)
#   airflow  Airflow 3 in its own venv (/opt/airflow/venv) + the same pipeline venv at
#            /app/.venv, the `<project>/.venv/bin/dvc` the DAG's tasks call by absolute path;
#            the command picks the role (docker/airflow/entrypoint.sh)
#
#   docker build --target api -t accidents-api .                 # anywhere (api is the default)
#   docker build --target airflow -t accidents-airflow .
#   docker build --build-arg BASE_IMAGE=accidents-base:local ... # no registry: base image from
#                                                                # scripts/docker/build_base_image.sh
#
# Both runtime images start from one `runtime` stage (base, user, pipeline venv), so on a host
# they share those layers. The venvs hold only what runs: requirements/runtime.txt (no test or
# dev tools; same versions as the dev lock) and the Airflow locks, trimmed by
# docker/slim-venv.sh. The project lives at /app exactly as in a checkout (src/, api/, dvc.yaml,
# params.yaml, retraining_run.sh); pipeline outputs (data/, models/, the DVC cache) are meant to
# be named volumes (docker-compose.yml).
ARG BASE_IMAGE=python:3.11-slim

# ------------------------------------------------------------------------------ build tools
FROM ${BASE_IMAGE} AS build-tools
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
# binutils: `strip` for docker/slim-venv.sh (this stage only)
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/uv && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"
COPY docker/slim-venv.sh /usr/local/bin/slim-venv

# ---------------------------------------------------------------------------- pipeline venv
FROM build-tools AS pipeline-venv
WORKDIR /app
# requirements/s3.txt: the DVC S3 remote and boto3 for MLflow's S3 artifacts (the scale-out
# stack, docker-compose.scale.yml), with its override (requirements/s3-overrides.txt).
COPY requirements/runtime.txt requirements/postgres.txt requirements/s3.txt \
     requirements/s3-overrides.txt /tmp/requirements/
RUN /opt/uv/bin/uv venv --quiet --python python3 /app/.venv \
 && /opt/uv/bin/uv pip install --quiet --python /app/.venv/bin/python \
      -r /tmp/requirements/runtime.txt -r /tmp/requirements/postgres.txt \
      -r /tmp/requirements/s3.txt --override /tmp/requirements/s3-overrides.txt \
 && slim-venv /app/.venv mlflow mlflow.server dvc.repo sklearn.ensemble pyarrow.parquet \
      matplotlib.pyplot skops.io treelite fastapi uvicorn psycopg boto3 dvc_s3 s3fs
# ------------------------------------------------------------------------- project install
# The project itself, editable as in a checkout: the venv points at /app/src and /app (whole
# packages: a new module needs no change here). Only the few files this install adds (its
# RECORD) go to the images, so a code change does not re-copy the whole venv.
FROM pipeline-venv AS project-install
COPY pyproject.toml README.md /app/
COPY src /app/src
COPY api /app/api
RUN /opt/uv/bin/uv pip install --quiet --python /app/.venv/bin/python --no-deps -e /app \
 && cd /app/.venv/lib/python3*/site-packages \
 && cut -d, -f1 accidents_mlops-*.dist-info/RECORD | sed "s|^|$PWD/|" | xargs cp --parents -t /tmp/ --no-dereference \
 && mkdir -p /tmp/editable && mv /tmp/app /tmp/editable/

# ----------------------------------------------------------------------------- airflow venv
FROM build-tools AS airflow-venv
COPY requirements/airflow.txt /tmp/requirements/airflow.txt
COPY requirements/airflow-extras.txt /tmp/requirements/airflow-extras.txt
RUN /opt/uv/bin/uv venv --quiet --python python3 /opt/airflow/venv \
 && /opt/uv/bin/uv pip install --quiet --python /opt/airflow/venv/bin/python \
      -r /tmp/requirements/airflow.txt -r /tmp/requirements/airflow-extras.txt \
 && slim-venv /opt/airflow/venv airflow.cli.cli_parser airflow.jobs.scheduler_job_runner \
      airflow.api_fastapi.app airflow.providers.standard.operators.bash airflow.providers.postgres \
      airflow.providers.celery.executors.celery_executor psycopg2 asyncpg

# ---------------------------------------------------------------------------------- runtime
# What both images share: the base, the service user, the pipeline venv.
# The drift job's own venv (Evidently 0.7 needs pandas < 3; see requirements/monitoring.in): only
# the Airflow image runs it. The project's sources are put on its path by a .pth file, as the
# editable install of `make setup-monitoring` does.
FROM build-tools AS monitoring-venv
COPY requirements/monitoring.txt /tmp/requirements/monitoring.txt
RUN /opt/uv/bin/uv venv --quiet --python python3 /app/.venv-monitoring \
 && /opt/uv/bin/uv pip install --quiet --python /app/.venv-monitoring/bin/python -r /tmp/requirements/monitoring.txt \
 && echo /app/src > "$(echo /app/.venv-monitoring/lib/python3*/site-packages)/accidents-mlops-src.pth" \
 && /app/.venv-monitoring/bin/python -c "import evidently, pandas, mlflow, sqlalchemy, psycopg, pyarrow"

FROM ${BASE_IMAGE} AS runtime
ARG APP_UID=10001
ENV ACCIDENTS_PROJECT_DIR=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DVC_NO_ANALYTICS=1 \
    GIT_PYTHON_REFRESH=quiet \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
# One UID for both images: they write the same volumes (data, models, the DVC cache).
RUN groupadd --gid "${APP_UID}" app \
 && useradd --uid "${APP_UID}" --gid app --create-home --home-dir /home/app --shell /bin/bash app
COPY --from=pipeline-venv /app/.venv /app/.venv
COPY --from=project-install /tmp/editable/ /
WORKDIR /app

# ---------------------------------------------------------------------------------- airflow
FROM runtime AS airflow
# Airflow's venv first on PATH (the `airflow` command); the pipeline venv is reached only by
# absolute path (/app/.venv/bin/dvc), as the DAG does.
ENV PATH=/opt/airflow/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/app/airflow/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/app/airflow/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    HOME=/opt/airflow
COPY --from=airflow-venv /opt/airflow/venv /opt/airflow/venv
COPY --from=monitoring-venv /app/.venv-monitoring /app/.venv-monitoring
COPY --chown=app:app . /app
# Volumes' mount points, DVC's private dirs and settings (docker/prepare-project.sh); the DAGs'
# bytecode; Airflow's home (passwords file, airflow.cfg) writable, not its venv.
RUN bash docker/prepare-project.sh /opt/airflow/logs /opt/airflow/state \
 && /opt/airflow/venv/bin/python -m compileall -q airflow/dags airflow/plugins \
 && chown app:app /opt/airflow
USER app
EXPOSE 8080
ENTRYPOINT ["/app/docker/airflow/entrypoint.sh"]
CMD ["api-server"]

# -------------------------------------------------------------------------------------- api
FROM runtime AS api
ENV PATH=/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/home/app
COPY --chown=app:app . /app
# Volumes' mount points, DVC's private dirs and settings (docker/prepare-project.sh), MLflow's
# artifacts dir.
RUN bash docker/prepare-project.sh /mlflow/artifacts
USER app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# X-Forwarded-For is believed only from the proxies FORWARDED_ALLOW_IPS names (uvicorn's own
# setting: addresses or networks, comma-separated): none by default, so a client cannot pick its
# own address for the login limits. The scale-out stack names HAProxy, Kubernetes its ingress.
ENV FORWARDED_ALLOW_IPS=""
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
