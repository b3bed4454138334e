"""API settings: environment variables (or a `.env` file), documented in `.env.example`.

Local mode works with no configuration at all (demo admin, generated JWT secret, SQLite under
`<project>/state/`). `ENVIRONMENT=production` refuses to start with demo credentials, every mode
with a weak JWT_SECRET: the checks live with the rest of the security code
(`api.core.security.startup_problems`). This module
imports nothing from the app.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from accidents import config as pipeline_config

# The documented local demo logins: defined once in accidents.config, re-exported for the app
# and scripts/run_stack.py.
from accidents.config import (
    DEMO_ADMIN_PASSWORD,
    DEMO_ADMIN_USERNAME,
    DEMO_AIRFLOW_PASSWORD,
    DEMO_AIRFLOW_USERNAME,
)
from accidents.store.prediction_log import file_url as prediction_log_file_url

# What every username matches, ADMIN_USERNAME included: checked before any name reaches the
# database (PostgreSQL rejects NUL bytes and names over the column's 64 characters with an error).
USERNAME_MAX_LENGTH = 64
USERNAME_PATTERN = rf"^[A-Za-z0-9_.@-]{{1,{USERNAME_MAX_LENGTH}}}$"
_USERNAME = re.compile(USERNAME_PATTERN)


def valid_username(name: str) -> bool:
    return _USERNAME.fullmatch(name) is not None


class Environment(StrEnum):
    LOCAL = "local"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=pipeline_config.project_dir() / ".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    environment: Environment = Environment.LOCAL
    project_dir: Path = Field(
        default_factory=pipeline_config.project_dir, validation_alias=AliasChoices(pipeline_config.ENV_PROJECT_DIR)
    )
    state_dir: Path | None = None  # default <project>/state

    # authentication
    jwt_secret: SecretStr | None = None
    jwt_secret_file: Path | None = None  # default <state>/jwt_secret (local mode only)
    access_token_expire_minutes: int = Field(default=30, ge=1, le=24 * 60)
    admin_username: str = Field(default=DEMO_ADMIN_USERNAME, pattern=USERNAME_PATTERN)
    admin_password: SecretStr | None = None  # local default: the demo password
    admin_password_hash: SecretStr | None = None  # argon2 or bcrypt (seed style); never with the password
    password_min_length: int = Field(default=8, ge=1)
    auth_cache_seconds: float = Field(default=2.0, ge=0)  # how long a user's enabled/role state is trusted
    # users DB down or frozen: tokens are checked against their user's last known state up to this
    # age (0: fail closed at once), a request waits this long for the DB (api/core/auth_cache.py)
    auth_max_stale_seconds: float = Field(default=300.0, ge=0, le=24 * 3600)
    auth_lookup_timeout_seconds: float = Field(default=1.0, gt=0, le=60)
    login_max_failures: int = Field(default=5, ge=1)  # per (username, client) pair
    login_max_failures_per_client: int = Field(default=20, ge=1)  # one client spraying usernames
    login_max_failures_per_username: int = Field(default=50, ge=1)  # one username from many clients
    login_window_seconds: float = Field(default=300.0, gt=0)
    # argon2id password checks at once (64 MiB each); beyond, logins get a 429 at once (issue #23)
    login_max_concurrent_checks: int = Field(default=2, ge=1)

    # database
    database_url: str | None = None  # default sqlite:///<state>/api.db
    # SQLite: how long a write waits for another writer's lock before answering 503 (not hanging)
    database_busy_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # PostgreSQL: connect_timeout, statement_timeout and tcp_user_timeout (api/db/engine.py)
    database_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    database_probe_seconds: float = Field(default=2.0, gt=0, le=300)  # how often /ready's view of it is checked

    # prediction
    max_batch_rows: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    explain_max_rows: int = Field(default=100, ge=1)  # ?explain=true: larger batches get a 422 (~3 ms a row)
    explain_top_features: int = Field(default=5, ge=1, le=28)  # contributions listed per row in `top`

    # prediction log (api.monitoring): every served row, written off the request path
    prediction_log_enabled: bool = True
    prediction_log_url: str | None = None  # default sqlite:///<state>/predictions.db (a file of its own)
    prediction_log_queue_rows: int = Field(default=100_000, ge=1)  # rows waiting; beyond: dropped, counted
    prediction_log_batch_rows: int = Field(default=5_000, ge=1)  # rows per insert
    prediction_log_flush_seconds: float = Field(default=0.2, gt=0, le=60)  # longest wait before a write
    prediction_log_retention_days: float = Field(default=90, ge=0)  # 0: keep every row

    # model serving
    mlflow_tracking_uri: str = Field(
        default_factory=pipeline_config.tracking_uri,
        validation_alias=AliasChoices(pipeline_config.ENV_TRACKING_URI),
    )
    mlflow_timeout_seconds: int = Field(default=5, ge=1)
    model_poll_seconds: float = Field(default=30.0, ge=0)  # 0: no polling (POST /model/reload only)
    # POST /v2/predict: the registry's accidents-report-time@champion, polled like the seed's (false: not loaded)
    report_model_enabled: bool = True

    # shadow challenger (api/serving/shadow.py): the registry's `challenger` scores a share of live rows off
    # the request path; answers stay the champion's. Each served model has its own (the seed's beside /predict,
    # accidents-report-time's beside /v2/predict), with the same share and queue bound each.
    # Off by default here, on in `make run` and compose.
    shadow_enabled: bool = False
    shadow_share: float = Field(default=0.25, ge=0, le=1)  # share of served rows also scored by the challenger
    shadow_queue_rows: int = Field(default=10_000, ge=1)  # rows waiting for the challenger; beyond: dropped, counted

    # retraining
    retrain_command: str | None = None  # default <project>/retraining_run.sh
    airflow_api_url: str | None = None  # set: retrain through Airflow; unset: local process
    airflow_username: str = DEMO_AIRFLOW_USERNAME
    airflow_password: SecretStr = SecretStr(DEMO_AIRFLOW_PASSWORD)
    airflow_timeout_seconds: float = Field(default=10.0, gt=0)

    # alert receiver (api/routes/alerts.py): Alertmanager's bearer credential for POST /monitoring/alerts,
    # a secret of its own (not a user token); unset: the receiver refuses every caller (401). Checked like JWT_SECRET.
    alerts_receiver_token: SecretStr | None = None
    alerts_max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)

    # HTTP
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator(
        "airflow_api_url",
        "database_url",
        "prediction_log_url",
        "retrain_command",
        "state_dir",
        "jwt_secret",
        "jwt_secret_file",
        "admin_password",
        "admin_password_hash",
        "alerts_receiver_token",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def state_path(self) -> Path:
        return self.state_dir or self.project_dir / "state"

    @property
    def jwt_secret_path(self) -> Path:
        return self.jwt_secret_file or self.state_path / "jwt_secret"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.state_path / 'api.db'}"

    @property
    def prediction_log(self) -> str:
        return self.prediction_log_url or prediction_log_file_url(self.state_path)

    @property
    def champion_path(self) -> Path:
        return pipeline_config.Paths(self.project_dir).champion

    @property
    def report_champion_path(self) -> Path:
        """The report-time model's local champion copy (evaluate's models/report_time/served/champion.zip)."""
        return pipeline_config.Paths(self.project_dir).report_time.champion

    @property
    def retrain_argv(self) -> str:
        return self.retrain_command or str(self.project_dir / "retraining_run.sh")

    @property
    def uses_demo_admin_password(self) -> bool:
        return self.admin_password_hash is None and self.admin_password is None

    def admin_password_value(self) -> str | None:
        """The bootstrap admin's password (the demo one in local mode when unset)."""
        if self.admin_password is not None:
            return self.admin_password.get_secret_value()
        return None if self.production else DEMO_ADMIN_PASSWORD
