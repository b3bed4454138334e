"""`make run`: the whole local stack, in the foreground, stopped by Ctrl-C (or SIGTERM).

1. checks the ports, prepares Airflow's home (`state/airflow`: SQLite DB, secrets, passwords file)
   and migrates its database when new or when Airflow's pinned version changed;
2. starts MLflow (scripts/mlflow_server.sh) and waits for GET /health;
3. when the registry has no `champion` yet, runs the pipeline once (./retraining_run.sh --force);
4. starts Airflow (api-server, scheduler, dag-processor) and the API, waits until each is healthy
   and the retraining DAG is loaded, prints the URLs and credentials, then streams prefixed logs
   (copies in logs/<service>.log). Stopping stops every process it started, by PID.

Each service gets only the variables it uses (allow-lists SYSTEM, PIPELINE, MLFLOW_SERVER, AIRFLOW,
API below): MLflow, Airflow and the pipeline never see the API's JWT secret or admin password.
MLflow runs without its basic auth here (loopback only; see mlflow_env); compose turns it on.

Settings (environment, or the project's .env file; the environment wins):
    STACK_HOST (127.0.0.1)  API_PORT (8000)  MLFLOW_PORT (5000)  AIRFLOW_PORT (8080)
    AIRFLOW_USERNAME / AIRFLOW_PASSWORD   Airflow's admin login, also used by the API (default: the demo login)
    ADMIN_USERNAME / ADMIN_PASSWORD       the API's admin (default: the demo login of api.core.config)
    ACCIDENTS_API_USERNAME / ACCIDENTS_API_PASSWORD
                                          what the DAG uses for POST /model/reload (default: the
                                          API's admin above; set them if you use ADMIN_PASSWORD_HASH)
    ACCIDENTS_RETRAIN_SCHEDULE            unconditional schedule of dvc_pipeline (default none: new-data check, manual)
    PROMETHEUS=1 (off)  PROMETHEUS_PORT (9090)  ALERTMANAGER_PORT (9093)
                                          also run the host's Prometheus (Debian package `prometheus`) scraping
                                          the API with the alert rules of deploy/prometheus (state/prometheus),
                                          and its Alertmanager (`prometheus-alertmanager`) delivering them to the
                                          API's POST /monitoring/alerts with ALERTS_RECEIVER_TOKEN (default:
                                          generated once into state/alertmanager/receiver_token)
    BAAC_DATA_DIR, BAAC_OFFLINE, ...      passed to the pipeline (see .env.example)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dotenv import dotenv_values
from stack_supervisor import (
    ConfigurationError,
    Console,
    Service,
    StackError,
    Supervisor,
    http_get,
    port_problem,
    post_json,
)

from accidents import config
from accidents.stack import alertmanager_config
from accidents.stack.prometheus_config import write_config
from api.core.config import DEMO_ADMIN_PASSWORD, DEMO_ADMIN_USERNAME, DEMO_AIRFLOW_PASSWORD, DEMO_AIRFLOW_USERNAME
from api.core.config import Settings as ApiSettings

PROJECT = Path(__file__).resolve().parents[1]
# Access-log lines of health polls: kept in logs/<service>.log, not echoed on the console.
QUIET = re.compile(
    r'"GET /(health|ready|api/v2/monitor/health|api/v2/version)[ ?]'
    r"|path=/(api/v2/monitor/health|api/v2/version) "
    r'|"route": "/(health|ready)"'
)


@dataclass(frozen=True)
class Settings:
    project: Path
    host: str
    api_port: int
    mlflow_port: int
    airflow_port: int
    airflow_username: str
    airflow_password: str
    api_username: str
    api_password: str
    env: dict[str, str]  # the environment every service starts from
    prometheus: bool = False
    prometheus_port: int = config.PROMETHEUS_PORT
    alertmanager_port: int = alertmanager_config.PORT

    @property
    def state(self) -> Path:
        return self.project / "state"

    @property
    def airflow_home(self) -> Path:
        return self.state / "airflow"

    @property
    def logs(self) -> Path:
        return self.project / "logs"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://{self.host}:{self.alertmanager_port}"


def read_dotenv(path: Path) -> dict[str, str]:
    """The KEY=VALUE pairs of a .env file (python-dotenv, the parser pydantic-settings uses too)."""
    if not path.is_file():
        return {}
    return {key: value for key, value in dotenv_values(path, interpolate=False).items() if value is not None}


def load_settings(project: Path = PROJECT, environ: dict[str, str] | None = None) -> Settings:
    env = {**read_dotenv(project / ".env"), **(os.environ if environ is None else environ)}

    def port(name: str, default: int) -> int:
        value = env.get(name) or str(default)
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise ConfigurationError(f"{name}={value!r} is not a TCP port")
        return int(value)

    api_username = env.get("ADMIN_USERNAME") or DEMO_ADMIN_USERNAME
    api_password = env.get("ADMIN_PASSWORD") or DEMO_ADMIN_PASSWORD
    return Settings(
        project=project,
        host=env.get("STACK_HOST") or config.DEFAULT_HOST,
        api_port=port("API_PORT", config.API_PORT),
        mlflow_port=port("MLFLOW_PORT", config.MLFLOW_PORT),
        airflow_port=port("AIRFLOW_PORT", config.AIRFLOW_PORT),
        airflow_username=env.get("AIRFLOW_USERNAME") or DEMO_AIRFLOW_USERNAME,
        airflow_password=env.get("AIRFLOW_PASSWORD") or DEMO_AIRFLOW_PASSWORD,
        api_username=env.get("ACCIDENTS_API_USERNAME") or api_username,
        api_password=env.get("ACCIDENTS_API_PASSWORD") or api_password,
        env=env,
        prometheus=switch(env, "PROMETHEUS"),
        prometheus_port=port("PROMETHEUS_PORT", config.PROMETHEUS_PORT),
        alertmanager_port=port("ALERTMANAGER_PORT", alertmanager_config.PORT),
    )


def switch(env: dict[str, str], name: str) -> bool:
    value = (env.get(name) or "0").strip().lower()
    if value not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
        raise ConfigurationError(f"{name}={value!r}: use 1 (on) or 0 (off)")
    return value in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------------- environments


# Each service starts from the variables it uses, never the whole environment + .env: .env holds
# the API's JWT secret and admin password, which MLflow, Airflow and the pipeline have no use for
# (issue #23 item 10). Names are allow-listed per service; prefixes cover a family.
SYSTEM = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
    "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
)  # fmt: skip
# what a pipeline run reads (DVC stages, retraining_run.sh): data source, DVC, S3 remote, MLflow login
PIPELINE = (
    "BAAC_", "DVC_", "AWS_", "GIT_", "STATE_DIR", "ACCIDENTS_STAGE_EXCHANGE", "ACCIDENTS_RUN_REASON",
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_S3_ENDPOINT_URL",
)  # fmt: skip
# MLflow's server: its own MLFLOW_* settings, but not the basic-auth admin's password (auth stays off
# under `make run`: see mlflow_env) nor the clients' logins
MLFLOW_SERVER = ("MLFLOW_", "AWS_")
MLFLOW_SERVER_DENIED = ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_TRACKING_", "MLFLOW_PIPELINE_", "MLFLOW_API_",
                        "MLFLOW_PROMOTER_")  # fmt: skip
# the DAGs' tasks run the pipeline and the monitoring jobs; Airflow's own AIRFLOW__* settings
AIRFLOW = (
    *PIPELINE, "AIRFLOW__", "PREDICTION_LOG_URL", "ACCIDENTS_RETRAIN_SCHEDULE", "ACCIDENTS_MONITORING_SCHEDULE",
    "ACCIDENTS_MONITORING_DAG_ID", "ACCIDENTS_TASK_QUEUES",
)  # fmt: skip
# the API: its settings (api.core.config.Settings, one variable per field) and what its local
# retraining (retraining_run.sh in a child process) and the registry client read
API = (*PIPELINE, *(name.upper() for name in ApiSettings.model_fields), "MLFLOW_PROMOTER_USERNAME",
       "MLFLOW_PROMOTER_PASSWORD")  # fmt: skip


def allowed(env: dict[str, str], names: tuple[str, ...], denied: tuple[str, ...] = ()) -> dict[str, str]:
    """The variables of `env` named in SYSTEM or `names` (an entry ending in "_" is a prefix), minus `denied`."""

    def matches(key: str, entries: tuple[str, ...]) -> bool:
        return any(key == entry or (entry.endswith("_") and key.startswith(entry)) for entry in entries)

    return {key: value for key, value in env.items() if matches(key, (*SYSTEM, *names)) and not matches(key, denied)}


def base_env(s: Settings, names: tuple[str, ...] = PIPELINE) -> dict[str, str]:
    """A service's environment: its allow-listed variables, the project and MLflow's URL."""
    return {
        **allowed(s.env, names),
        config.ENV_PROJECT_DIR: str(s.project),
        config.ENV_TRACKING_URI: s.mlflow_url,
        "PYTHONUNBUFFERED": "1",
    }


def pipeline_env(s: Settings) -> dict[str, str]:
    """The first pipeline run's (retraining_run.sh)."""
    return base_env(s, PIPELINE)


def mlflow_env(s: Settings) -> dict[str, str]:
    """MLflow's server. Without basic auth: it listens on loopback only, and `make pipeline`,
    `make monitor`, `make realized`, `make bench` and the tests run from other shells against it,
    which would all need a login (docs/security.md). Compose turns the auth on."""
    return {
        **allowed(s.env, MLFLOW_SERVER, MLFLOW_SERVER_DENIED),
        config.ENV_PROJECT_DIR: str(s.project),
        "PYTHONUNBUFFERED": "1",
        "MLFLOW_HOST": s.host,
        "MLFLOW_PORT": str(s.mlflow_port),
        "MLFLOW_STATE_DIR": s.env.get("MLFLOW_STATE_DIR") or str(config.Paths(s.project).mlruns),
    }


def airflow_env(s: Settings, secret: dict[str, str]) -> dict[str, str]:
    home = s.airflow_home
    venv_bin = s.project / ".venv-airflow" / "bin"
    return {
        **base_env(s, AIRFLOW),
        "PATH": f"{venv_bin}:{s.env.get('PATH', '/usr/bin:/bin')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(s.project / "airflow" / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(s.project / "airflow" / "plugins"),  # the DAGs' helpers
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",  # LocalExecutor workers; the DAG runs one task at a time
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{s.airflow_username}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__HOST": s.host,
        "AIRFLOW__API__PORT": str(s.airflow_port),
        "AIRFLOW__API__BASE_URL": s.airflow_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{s.airflow_url}/execution/",
        # Every Airflow process must share these, or tasks cannot talk to the API server.
        "AIRFLOW__API_AUTH__JWT_SECRET": secret["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": secret["secret_key"],
        "AIRFLOW__CORE__FERNET_KEY": secret["fernet_key"],
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        # what the DAG file reads (it imports nothing from the project)
        "ACCIDENTS_DAG_ID": config.DAG_ID,
        "ACCIDENTS_SCHEDULE_START": secret["created_at"],
        "ACCIDENTS_API_URL": s.api_url,
        "ACCIDENTS_API_USERNAME": s.api_username,
        "ACCIDENTS_API_PASSWORD": s.api_password,
        # the monitoring DAG's decision lists dvc_pipeline's runs through Airflow's REST API
        "ACCIDENTS_AIRFLOW_USERNAME": s.airflow_username,
        "ACCIDENTS_AIRFLOW_PASSWORD": s.airflow_password,
    }


def api_env(s: Settings) -> dict[str, str]:
    return {
        **base_env(s, API),
        "AIRFLOW_API_URL": s.airflow_url,
        "AIRFLOW_USERNAME": s.airflow_username,
        "AIRFLOW_PASSWORD": s.airflow_password,
        # the registry's challenger scores a share of live rows in the shadow of the champion (api/serving/shadow.py)
        "SHADOW_ENABLED": s.env.get("SHADOW_ENABLED", "true"),
        # Alertmanager's credential for the receiver (PROMETHEUS=1 only: without it the receiver stays off)
        **({"ALERTS_RECEIVER_TOKEN": receiver_token(s)} if s.prometheus else {}),
    }


# ----------------------------------------------------------------------------------- preparation


def check_ports(s: Settings) -> None:
    problems = []
    services = [("MLflow", "MLFLOW_PORT", s.mlflow_port), ("Airflow", "AIRFLOW_PORT", s.airflow_port),
                ("API", "API_PORT", s.api_port)]  # fmt: skip
    if s.prometheus:
        services.append(("Prometheus", "PROMETHEUS_PORT", s.prometheus_port))
        services.append(("Alertmanager", "ALERTMANAGER_PORT", s.alertmanager_port))
    for name, variable, port in services:
        problem = port_problem(s.host, port)
        if problem:
            problems.append(f"  {name}: {problem} (choose another: {variable}=... make run)")
    if len({port for _, _, port in services}) < len(services):
        problems.append(f"  {', '.join(variable for _, variable, _ in services)} must differ")
    if problems:
        raise ConfigurationError(
            "cannot start the stack:\n" + "\n".join(problems) + "\n  (is another `make run` running?)"
        )


def prometheus_binary(s: Settings) -> str | None:
    """The host's `prometheus` when PROMETHEUS=1 (a clear error when it is not installed)."""
    if not s.prometheus:
        return None
    binary = shutil.which("prometheus", path=s.env.get("PATH"))
    if binary is None:
        raise ConfigurationError("PROMETHEUS=1 but no `prometheus` on PATH: apt-get install prometheus")
    return binary


def start_prometheus(s: Settings, sup: Supervisor, binary: str) -> Service:
    """Prometheus on loopback scraping the API, with the repo's alert rules sent to the stack's
    Alertmanager; data in state/prometheus."""
    folder = s.state / "prometheus"
    config_file = write_config(folder / "prometheus.yml", [f"{s.host}:{s.api_port}"],
                               alertmanagers=[f"{s.host}:{s.alertmanager_port}"])  # fmt: skip
    cmd = [binary, f"--config.file={config_file}", f"--storage.tsdb.path={folder / 'data'}",
           f"--web.listen-address={s.host}:{s.prometheus_port}", "--storage.tsdb.retention.time=15d"]  # fmt: skip
    return sup.start("prometheus", cmd, base_env(s, ()), s.project)


def alertmanager_binary(s: Settings) -> str | None:
    """The host's Alertmanager when PROMETHEUS=1 (Debian names it prometheus-alertmanager)."""
    if not s.prometheus:
        return None
    for name in ("prometheus-alertmanager", "alertmanager"):
        binary = shutil.which(name, path=s.env.get("PATH"))
        if binary is not None:
            return binary
    raise ConfigurationError("PROMETHEUS=1 but no Alertmanager on PATH: apt-get install prometheus-alertmanager")


def receiver_token(s: Settings) -> str:
    """ALERTS_RECEIVER_TOKEN when set, else a strong one generated once into
    state/alertmanager/receiver_token (0600): the API gets it in its environment, Alertmanager
    reads the file (its credentials_file). Written again from the setting so both always agree."""
    path = s.state / "alertmanager" / "receiver_token"
    stored = path.read_text().strip() if path.is_file() else ""
    token = s.env.get("ALERTS_RECEIVER_TOKEN") or stored or secrets.token_urlsafe(48)
    if token != stored:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(token)
    return token


def start_alertmanager(s: Settings, sup: Supervisor, binary: str) -> Service:
    """Alertmanager on loopback delivering every alert to the API's receiver; data in state/alertmanager."""
    folder = s.state / "alertmanager"
    receiver_token(s)
    config_file = alertmanager_config.write_config(folder / "alertmanager.yml", s.api_url, folder / "receiver_token")
    cmd = [binary, f"--config.file={config_file}", f"--storage.path={folder / 'data'}",
           f"--web.listen-address={s.host}:{s.alertmanager_port}", "--cluster.listen-address="]  # fmt: skip
    return sup.start("alertmanager", cmd, base_env(s, ()), s.project)


def check_venvs(s: Settings) -> None:
    for venv, target in ((".venv", "make setup"), (".venv-airflow", "make setup-airflow"),
                         (".venv-monitoring", "make setup-monitoring")):  # fmt: skip
        if not (s.project / venv / "bin" / "python").exists():
            raise ConfigurationError(f"{s.project / venv} is missing: run `{target}` (or just `make run`)")


def airflow_secrets(s: Settings) -> dict[str, str]:
    """Keys all Airflow processes share, made once and kept in state/airflow/secrets.json."""
    path = s.airflow_home / "secrets.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    values = {
        # The DAG's start_date: the first scheduled run comes at the first schedule point after
        # this, not at once (Airflow 3 otherwise runs the latest past point as soon as it starts).
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "jwt_secret": secrets.token_urlsafe(48),
        "secret_key": secrets.token_urlsafe(32),
        "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }
    if stored.keys() >= values.keys():
        return stored
    values.update(stored)
    s.airflow_home.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(values))
    return values


def write_passwords(s: Settings) -> None:
    """The simple auth manager's passwords file (rewritten each start: the settings win)."""
    path = s.airflow_home / "passwords.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps({s.airflow_username: s.airflow_password}))


def migrate_needed(s: Settings) -> tuple[bool, Path, str]:
    stamp = s.airflow_home / ".db-migrated"
    lock = hashlib.sha256((s.project / "requirements" / "airflow.txt").read_bytes()).hexdigest()
    fresh = (s.airflow_home / "airflow.db").is_file() and stamp.is_file() and stamp.read_text().strip() == lock
    return not fresh, stamp, lock


def registry_has_champion(s: Settings) -> bool:
    query = urllib.parse.urlencode({"name": config.MODEL_NAME, "alias": config.CHAMPION_ALIAS})
    status, _ = http_get(f"{s.mlflow_url}/api/2.0/mlflow/registered-models/alias?{query}", timeout=10)
    return status == 200


def airflow_token(s: Settings) -> str | None:
    try:
        answer = post_json(
            f"{s.airflow_url}/auth/token", {"username": s.airflow_username, "password": s.airflow_password}
        )
    except (OSError, ValueError):
        return None
    return answer.get("access_token") if isinstance(answer, dict) else None


def airflow_healthy(s: Settings) -> bool:
    status, body = http_get(f"{s.airflow_url}/api/v2/monitor/health")
    if status != 200:
        return False
    health = json.loads(body)
    parts = ("metadatabase", "scheduler", "dag_processor")
    return (
        all((health.get(part) or {}).get("status") in ("healthy", None) for part in parts)
        and (health.get("scheduler") or {}).get("status") == "healthy"
    )


def dag_loaded(s: Settings) -> bool:
    token = airflow_token(s)
    if not token:
        return False
    status, _ = http_get(f"{s.airflow_url}/api/v2/dags/{config.DAG_ID}", headers={"Authorization": f"Bearer {token}"})
    return status == 200


def dag_import_errors(s: Settings) -> str:
    token = airflow_token(s)
    status, body = http_get(f"{s.airflow_url}/api/v2/importErrors", headers={"Authorization": f"Bearer {token}"})
    if status != 200:
        return f"(could not list import errors: HTTP {status})"
    errors = json.loads(body).get("import_errors") or []
    return "\n".join(f"{error.get('filename')}: {error.get('stack_trace')}" for error in errors) or "(none reported)"


# ------------------------------------------------------------------------------------------- run


def api_login(s: Settings) -> tuple[str, str]:
    """The API admin's (username, password as the banner may show it): the demo password, or the
    name of the variable that holds the real one (never its value)."""
    username = s.env.get("ADMIN_USERNAME") or DEMO_ADMIN_USERNAME
    if s.env.get("ADMIN_PASSWORD"):
        return username, "$ADMIN_PASSWORD"
    if s.env.get("ADMIN_PASSWORD_HASH"):
        return username, "<the password of ADMIN_PASSWORD_HASH>"
    return username, DEMO_ADMIN_PASSWORD


def banner(s: Settings, seconds: float) -> str:
    api_username, api_password = api_login(s)
    airflow_login = f"{s.airflow_username} / " + (
        "$AIRFLOW_PASSWORD" if s.env.get("AIRFLOW_PASSWORD") else DEMO_AIRFLOW_PASSWORD
    )
    data = s.env.get(config.ENV_DATA_DIR) or "not set (download, else synthetic demo data)"
    prometheus = (
        f"\n   Prometheus {s.prometheus_url}/alerts   rules deploy/prometheus/alerts.yml"
        f"\n   Alertmanager {s.alertmanager_url}   delivers to {s.api_url}/monitoring/alerts (dashboard)"
        if s.prometheus
        else ""
    )
    return f"""
================================================================================
 accidents-mlops is up ({seconds:.0f} s). Ctrl-C stops everything.
   API      {s.api_url}/docs   login {api_username} / {api_password}
   Airflow  {s.airflow_url}        login {airflow_login}   DAG {config.DAG_ID}
   MLflow   {s.mlflow_url}        model {config.MODEL_NAME}, alias {config.CHAMPION_ALIAS}
   Dashboard {s.api_url}/dashboard   (admins){prometheus}
   data     {config.ENV_DATA_DIR}={data}
   logs     {s.logs}/<service>.log    state {s.state}
 Try:
   TOKEN=$(curl -s -X POST {s.api_url}/auth/token -d "username={api_username}&password={api_password}" \\
           | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
   curl -X POST {s.api_url}/retrain -H "Authorization: Bearer $TOKEN"
================================================================================""".rstrip()


def start_stack(s: Settings, sup: Supervisor) -> float:
    """Everything up to "healthy"; returns the seconds it took."""
    started = time.monotonic()
    check_venvs(s)
    check_ports(s)
    prometheus = prometheus_binary(s)
    alertmanager = alertmanager_binary(s)
    secret = airflow_secrets(s)
    write_passwords(s)
    airflow = [str(s.project / ".venv-airflow" / "bin" / "airflow")]

    mlflow_cmd = ["bash", str(s.project / "scripts" / "mlflow_server.sh")]
    mlflow = sup.start("mlflow", mlflow_cmd, mlflow_env(s), s.project, quiet=QUIET)
    needs_migration, stamp, lock = migrate_needed(s)
    if needs_migration:  # while MLflow starts
        sup.say("initialising Airflow's database (airflow db migrate)")
        if sup.run("airflow-db", [*airflow, "db", "migrate"], airflow_env(s, secret), s.project) != 0:
            raise StackError(f"`airflow db migrate` failed: see {s.logs / 'airflow-db.log'}")
        stamp.write_text(lock)
    # Airflow's API server needs nothing else: it starts while MLflow does (and the pipeline runs).
    # The scheduler waits: tasks report to the API server, and no DAG run may start before the
    # first model exists.
    env = airflow_env(s, secret)
    api_server = sup.start(
        "airflow-api",
        [*airflow, "api-server", "--host", s.host, "--port", str(s.airflow_port), "--workers", "1"],
        env,
        s.project,
        quiet=QUIET,
    )
    waited = sup.wait_until("MLflow", lambda: http_get(f"{s.mlflow_url}/health")[0] == 200, [mlflow], timeout=240)
    sup.say(f"MLflow healthy at {s.mlflow_url} ({waited:.0f} s)")

    if not registry_has_champion(s):
        sup.say(f"no '{config.CHAMPION_ALIAS}' in the registry yet: running the pipeline once (./retraining_run.sh)")
        code = sup.run("pipeline", [str(s.project / "retraining_run.sh"), "--force"], pipeline_env(s), s.project)
        if code != 0:
            raise StackError(f"the first pipeline run failed (exit {code}): see {s.logs / 'pipeline.log'}")
        if not registry_has_champion(s):
            raise StackError(f"the pipeline ran but the registry has no '{config.CHAMPION_ALIAS}' model")

    uvicorn = s.project / ".venv" / "bin" / "uvicorn"
    api = sup.start(
        "api",
        [str(uvicorn), "api.main:app", "--host", s.host, "--port", str(s.api_port)],
        api_env(s),
        s.project,
        quiet=QUIET,
    )
    version_url = f"{s.airflow_url}/api/v2/version"
    waited = sup.wait_until("Airflow's API server", lambda: http_get(version_url)[0] == 200, [api_server], timeout=240)
    sup.say(f"Airflow API server up at {s.airflow_url} ({waited:.0f} s)")
    scheduler = sup.start("scheduler", [*airflow, "scheduler", "--skip-serve-logs"], env, s.project)
    dag_processor = sup.start("dag-proc", [*airflow, "dag-processor"], env, s.project)
    airflow_services: list[Service] = [api_server, scheduler, dag_processor]

    waited = sup.wait_until("the API", lambda: http_get(f"{s.api_url}/health")[0] == 200, [api], timeout=120)
    sup.say(f"API up at {s.api_url} ({waited:.0f} s)")
    with contextlib.suppress(StackError):
        sup.wait_until("a model in the API", lambda: http_get(f"{s.api_url}/ready")[0] == 200, [api], timeout=60)
    if http_get(f"{s.api_url}/ready")[0] != 200:
        sup.say(f"WARNING: {s.api_url}/ready is not 200: the API has no model yet (see logs/api.log)")
    if alertmanager is not None:
        manager = start_alertmanager(s, sup, alertmanager)
        ready = f"{s.alertmanager_url}/-/ready"
        waited = sup.wait_until("Alertmanager", lambda: http_get(ready)[0] == 200, [manager], timeout=60)
        sup.say(
            f"Alertmanager up at {s.alertmanager_url}, delivering to {s.api_url}/monitoring/alerts ({waited:.0f} s)"
        )
    if prometheus is not None:
        server = start_prometheus(s, sup, prometheus)
        ready = f"{s.prometheus_url}/-/ready"
        waited = sup.wait_until("Prometheus", lambda: http_get(ready)[0] == 200, [server], timeout=60)
        sup.say(f"Prometheus up at {s.prometheus_url}, scraping {s.api_url}/metrics ({waited:.0f} s)")
    waited = sup.wait_until("Airflow", lambda: airflow_healthy(s), airflow_services, timeout=240)
    sup.say(f"Airflow healthy at {s.airflow_url} ({waited:.0f} s)")
    try:
        sup.wait_until(f"the DAG {config.DAG_ID}", lambda: dag_loaded(s), airflow_services, timeout=120, interval=1)
    except StackError:
        sup.say(f"WARNING: Airflow has not loaded the DAG {config.DAG_ID}; import errors:\n{dag_import_errors(s)}")
    return time.monotonic() - started


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run MLflow, Airflow and the API locally (what `make run` does).",
        epilog=__doc__.split("Settings", 1)[1].join(["Settings", ""]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--no-color", action="store_true", help="plain prefixes (default: colour on a terminal)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    console = Console(color=False if args.no_color else None)
    try:
        settings = load_settings()
    except StackError as error:
        print(f"run_stack: {error}", file=sys.stderr)
        return error.exit_code
    sup = Supervisor(settings.logs, console)
    sup.install_signal_handlers()
    code = 0
    try:
        seconds = start_stack(settings, sup)
        console.say(banner(settings, seconds))
        sup.say("stack ready")
        died = sup.watch()
        if died is not None:
            tail = "\n".join(list(died.tail)[-25:])
            sup.say(f"{died.name} exited unexpectedly (code {died.returncode()}); stopping the stack\n{tail}")
            code = 1
    except StackError as error:
        sup.say(f"ERROR: {error}")
        code = error.exit_code
    except KeyboardInterrupt:
        code = 130
    finally:
        if sup.stop_all():
            sup.say("stopped")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
