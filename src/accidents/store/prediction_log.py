"""The prediction log: its tables (the one definition the API's writer, the jobs and the
migrations check against), its database, its Alembic migrations, and the export for jobs.

What `POST /predict` and `POST /v2/predict` served is one row per scored accident in
`prediction_log`, its `model` column saying which model served it (revision 0006): "seed" (the
28-feature seed model of /predict: its inputs in the 28 feature columns) or "report_time" (the
report-time model of /v2/predict: its 95 inputs as one JSON object in `report_features`, the 28
seed columns NULL). Versions of the two registered models both start at 1: a reader of one
model's rows filters on `model` as well as `model_version` (`read_window` reads the seed's rows
unless told otherwise). The label job
(`accidents.monitoring.realized`) writes its results to `realized_performance`, which the API reads for its
Prometheus gauges. Jobs read a window of the log as a DataFrame with `read_window` (no HTTP):

    python -m accidents.store.prediction_log export --from 2026-12-01 --to 2026-12-02 --out window.csv
    python -m accidents.store.prediction_log migrate        # what the API runs at start when needed

The database: PREDICTION_LOG_URL (any SQLAlchemy URL), default a SQLite file of its own,
`<state>/predictions.db`, in WAL mode, so the log's writer never holds the users database's
write lock. This module imports no pandas at import time (the API imports it for the tables).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    false,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from accidents.config import project_dir
from accidents.features import FEATURE_NAMES
from accidents.stage import REPORT_TIME, SEED
from accidents.store.database import database_engine, migration_lock

if TYPE_CHECKING:
    import pandas as pd

ENV_LOG_URL = "PREDICTION_LOG_URL"
ENV_STATE_DIR = "STATE_DIR"  # the API's state folder (api.core.config.Settings.state_dir)
LOG_FILE_NAME = "predictions.db"
# BAAC accident ids (Num_Acc) are 12 digits; room for other numbering schemes, nothing more.
ACCIDENT_ID_MAX_LENGTH = 20
VERSION_TABLE = "prediction_log_alembic_version"  # its own: the database may hold other apps' tables
SCHEMA_REVISION = "0008"  # head of migrations/versions (tests/api/monitoring/test_log_writer.py checks they agree)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# prediction_log.model: the pipeline's model keys (accidents.stage). SEED_MODEL: /predict's rows (and every row
# logged before revision 0006); REPORT_TIME_MODEL: /v2/predict's rows (accidents-report-time, inputs in report_features)
SEED_MODEL, REPORT_TIME_MODEL = SEED, REPORT_TIME
MODEL_NAME_MAX_LENGTH = 32

metadata = MetaData()
ID_TYPE = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only

predictions = Table(
    "prediction_log",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("logged_at", DateTime(timezone=True), nullable=False),
    Column("request_id", String(32), nullable=False),
    Column("model_version", String(64), nullable=True),
    Column("model_source", String(16), nullable=False),  # registry | local
    Column("caller_role", String(16), nullable=False),  # the role, never the token or the username
    Column("accident_id", String(ACCIDENT_ID_MAX_LENGTH), nullable=True),
    *(Column(name, Float, nullable=True) for name in FEATURE_NAMES),  # as received after validation
    Column("probability", Float, nullable=False),
    Column("predicted_class", SmallInteger, nullable=False),
    Column("threshold", Float, nullable=False),
    # Shadow rows (revision 0003): the challenger's prediction of a served row, never sent to the
    # client, next to the champion's prediction of the same row (api/serving/shadow.py). Served rows: false/NULL.
    Column("shadow", Boolean, nullable=False, server_default=false()),
    Column("champion_version", String(64), nullable=True),
    Column("champion_probability", Float, nullable=True),
    Column("champion_class", SmallInteger, nullable=True),
    # Which model served the row (revision 0006): SEED_MODEL or REPORT_TIME_MODEL; rows logged
    # before it are the seed's (server default). report_features: the report-time model's inputs,
    # one JSON object {feature: value or null} a row; NULL on the seed's rows.
    Column("model", String(MODEL_NAME_MAX_LENGTH), nullable=False, server_default=SEED_MODEL),
    Column("report_features", Text, nullable=True),
    Index("ix_prediction_log_logged_at", "logged_at"),
    Index("ix_prediction_log_version_time", "model_version", "logged_at"),
    Index("ix_prediction_log_accident_id", "accident_id"),
)

realized = Table(
    "realized_performance",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("computed_at", DateTime(timezone=True), nullable=False),
    Column("job_id", String(32), nullable=False),  # one run of the label job: its rows share it
    Column("model_version", String(64), nullable=False),
    Column("month", String(7), nullable=True),  # YYYY-MM of the accidents; NULL: every month
    Column("rows_logged", Integer, nullable=False),  # distinct logged accidents of this version
    Column("rows_labelled", Integer, nullable=False),  # joined with a label
    Column("rows_unlabelled", Integer, nullable=False),  # logged, no label (yet)
    Column("roc_auc", Float, nullable=True),  # NULL when one class only
    Column("f1", Float, nullable=True),
    Column("precision", Float, nullable=True),
    Column("recall", Float, nullable=True),
    Column("positive_rate", Float, nullable=True),  # observed share of severe accidents
    Column("predicted_positive_rate", Float, nullable=True),
    Column("mean_probability", Float, nullable=True),
    Column("brier", Float, nullable=True),
    Column("ece", Float, nullable=True),  # expected calibration error, 10 equal-width bins
    Column("label_source", String(200), nullable=False),
    Column("mlflow_run_id", String(64), nullable=True),
    # Shadow comparison rows (revision 0003): champion and challenger graded on the same labelled
    # shadow rows; both NULL for the regular per-version results.
    Column("shadow_champion", String(64), nullable=True),
    Column("shadow_challenger", String(64), nullable=True),
    # Which model's logged rows it grades (revision 0007), as prediction_log.model; grades stored
    # before it are the seed's (server default).
    Column("model", String(MODEL_NAME_MAX_LENGTH), nullable=False, server_default=SEED_MODEL),
    Index("ix_realized_version_time", "model_version", "computed_at"),
)

LOG_COLUMNS: tuple[str, ...] = tuple(column.name for column in predictions.columns)


def file_url(state_dir: Path) -> str:
    """The log's own SQLite file in a state folder (the API's default)."""
    return f"sqlite:///{state_dir / LOG_FILE_NAME}"


def default_url() -> str:
    """What the API uses with the same environment: PREDICTION_LOG_URL, else the SQLite file in its
    state folder (STATE_DIR, else <project>/state)."""
    return os.environ.get(ENV_LOG_URL) or file_url(Path(os.environ.get(ENV_STATE_DIR) or project_dir() / "state"))


def create_log_engine(url: str, busy_timeout_seconds: float = 5.0) -> Engine:
    """An engine for the log. SQLite: WAL and synchronous=NORMAL (in WAL mode still consistent
    after a crash; a power cut may lose the last transactions, never the file)."""
    return database_engine(url, busy_timeout_seconds, synchronous="NORMAL")


# --- migrations ---------------------------------------------------------------------------------


def current_revision(connection: Connection) -> str | None:
    """The schema revision recorded in the database (None: never migrated). Plain SQL, no Alembic
    import: the API checks this at every start and runs the migrations only when behind."""
    try:
        return connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()  # noqa: S608
    except (OperationalError, ProgrammingError):  # no version table yet
        connection.rollback()
        return None


def migrate(url: str) -> str:
    """Upgrade the log's schema to the head revision with Alembic; the revision reached."""
    from alembic import command
    from alembic.config import Config

    engine = create_log_engine(url)
    try:
        with engine.begin() as connection:
            migration_lock(connection, "accidents-prediction-log-schema")  # another replica's: wait, then no-op
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        with engine.connect() as connection:
            return current_revision(connection) or ""
    finally:
        engine.dispose()


def ensure_schema(engine: Engine, url: str, timeout_seconds: float = 120) -> None:
    """Make sure the log's schema is at SCHEMA_REVISION: a cheap check, and when behind the
    migrations in a child process (`python -m accidents.store.prediction_log migrate`), which keeps
    Alembic (~12 MB) out of the calling process. The URL travels in the environment, not argv."""
    with engine.connect() as connection:
        if current_revision(connection) == SCHEMA_REVISION:
            return
    env = {**os.environ, ENV_LOG_URL: url}
    result = subprocess.run(
        [sys.executable, "-m", "accidents.store.prediction_log", "migrate"],
        env=env, capture_output=True, text=True, timeout=timeout_seconds,
    )  # fmt: skip
    if result.returncode != 0:
        with engine.connect() as connection:
            if current_revision(connection) == SCHEMA_REVISION:  # another worker migrated it meanwhile
                return
        raise RuntimeError(f"prediction log migration failed: {result.stderr.strip()[-2000:]}")


# --- export for jobs ----------------------------------------------------------------------------


def read_window(
    url: str | Engine,
    since: datetime | None = None,
    until: datetime | None = None,
    model_version: str | None = None,
    with_accident_id: bool = False,
    newest: int | None = None,
    shadow: bool = False,
    model: str | None = SEED_MODEL,
) -> pd.DataFrame:
    """Logged predictions with since <= logged_at < until (UTC), oldest first, as a DataFrame with
    the columns of `prediction_log` (features under their contract names); `newest`: only the
    newest N of them. The monitoring jobs' way in: one SQL query, no HTTP. Served rows only, or
    with `shadow` the challenger's shadow rows only (never both: a shadow row is not traffic).
    `model`: the rows of that model only (default the seed's: the jobs' windows and grades are the
    seed's; its version numbers overlap the report-time model's); None: every model's."""
    import pandas as pd

    served = predictions.c.shadow.is_(shadow)
    query = select(predictions).where(served).order_by(predictions.c.id)
    if newest is not None:
        query = select(predictions).where(served).order_by(predictions.c.id.desc()).limit(newest)
    if since is not None:
        query = query.where(predictions.c.logged_at >= _utc(since))
    if until is not None:
        query = query.where(predictions.c.logged_at < _utc(until))
    if model_version is not None:
        query = query.where(predictions.c.model_version == model_version)
    if model is not None:
        query = query.where(predictions.c.model == model)
    if with_accident_id:
        query = query.where(predictions.c.accident_id.is_not(None))
    engine = create_log_engine(url) if isinstance(url, str) else url
    try:
        with engine.connect() as connection:
            frame = pd.read_sql(query, connection)
    finally:
        if isinstance(url, str):
            engine.dispose()
    if newest is not None:
        frame = frame.iloc[::-1].reset_index(drop=True)
    frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True)
    return frame


def _utc(moment: datetime) -> datetime:
    """Naive times are UTC. Stored times are UTC (SQLite keeps them without the offset, so a bound
    value must be in UTC too for the text comparison to hold)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _moment(text: str) -> datetime:
    """An ISO date or date-time from the command line (UTC unless it carries an offset)."""
    return datetime.fromisoformat(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m accidents.store.prediction_log", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--url", default=None, help=f"SQLAlchemy URL (default: ${ENV_LOG_URL} or <state>/{LOG_FILE_NAME})"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="upgrade the schema to the latest revision")
    export = commands.add_parser("export", help="write a window of the log as CSV")
    export.add_argument("--from", dest="since", type=_moment, help="start (inclusive), ISO date or date-time, UTC")
    export.add_argument("--to", dest="until", type=_moment, help="end (exclusive)")
    export.add_argument("--model-version")
    export.add_argument("--model", default=SEED_MODEL, choices=(SEED_MODEL, REPORT_TIME_MODEL, "all"),
                        help=f"which model's rows: {SEED_MODEL} (default), {REPORT_TIME_MODEL} or all")  # fmt: skip
    export.add_argument("--out", type=Path, required=True, help="CSV file to write")
    args = parser.parse_args(argv)
    url = args.url or default_url()
    if args.command == "migrate":
        print(f"prediction log schema at revision {migrate(url)}")
        return 0
    model = None if args.model == "all" else args.model
    frame = read_window(url, args.since, args.until, args.model_version, model=model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"{len(frame)} logged predictions -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
