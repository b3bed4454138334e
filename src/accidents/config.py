"""Single source of truth for names, paths, ports and the pipeline parameters.

The API, the pipeline stages, the tests and the scripts read these values from here
(shell scripts through `python -m accidents.config KEY`), never from copies.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MODEL_NAME = "accidents-severity"
# The report-time model (issue #25: every user and vehicle, no outcome-selected row): its own
# registered model, with its own champion / challenger aliases (same alias names), same lifecycle.
REPORT_MODEL_NAME = "accidents-report-time"
CHAMPION_ALIAS = "champion"
# A version that loaded, passed the contract check and was not promoted: the API scores a share of
# live traffic with it in the shadow of the champion (api/serving/shadow.py) until it is promoted or dropped.
CHALLENGER_ALIAS = "challenger"
# Tags of a registered version, set by train: here, not in accidents.model.registry, because jobs
# in .venv-monitoring read them and registry imports the model store (treelite, not installed there).
TAG_THRESHOLD = "decision_threshold"
TAG_DATA_SOURCE = "data_source"
TAG_TRAINED_AT = "trained_at"
TAG_FAMILY = "model_family"
# MLflow experiment of the audit runs of promotions and drops made through the API (POST /model/promote)
MONITORING_EXPERIMENT = "monitoring"
DAG_ID = "dvc_pipeline"

API_PORT = 8000
MLFLOW_PORT = 5000
AIRFLOW_PORT = 8080
PROMETHEUS_PORT = 9090  # `make run PROMETHEUS=1` and the compose `prometheus` service
DEFAULT_HOST = "127.0.0.1"

EXPERIMENT_NAME = "accidents-severity"

# The documented local demo logins (README). The API refuses them in production mode
# (api.core.security); the API, the replay CLI and the benchmarks read them from here.
DEMO_ADMIN_USERNAME = "admin"
DEMO_ADMIN_PASSWORD = "admin123"  # noqa: S105 - the documented local demo credential
DEMO_AIRFLOW_USERNAME = "admin"
DEMO_AIRFLOW_PASSWORD = "admin"  # noqa: S105 - Airflow's documented local demo credential

# Environment variables understood by the pipeline (documented in .env.example).
ENV_PROJECT_DIR = "ACCIDENTS_PROJECT_DIR"
ENV_DATA_DIR = "BAAC_DATA_DIR"  # offline mirror: official tables or the joined accident table
ENV_OFFLINE = "BAAC_OFFLINE"  # "1": never try to download
ENV_BASE_URL = "BAAC_BASE_URL"  # where the stable data.gouv.fr resource URLs live
ENV_DATASET_API = "BAAC_DATASET_API"  # the data.gouv.fr dataset API listing the published files
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_RUN_REASON = "ACCIDENTS_RUN_REASON"  # why a pipeline run started (the DAG sets it): an MLflow tag
ENV_ENVIRONMENT = "ENVIRONMENT"  # "production" (the API's variable too): synthetic data is refused outright
ENV_FORCE_PROMOTION = "ACCIDENTS_FORCE_PROMOTION"  # "1": evaluate promotes over a champion it cannot load


def production_mode() -> bool:
    """ENVIRONMENT=production, the mode the API reads from the same variable."""
    return os.environ.get(ENV_ENVIRONMENT, "").strip().lower() == "production"


def project_dir() -> Path:
    """Root of the checkout (editable install: src/accidents/config.py -> ../../)."""
    override = os.environ.get(ENV_PROJECT_DIR)
    return Path(override).resolve() if override else Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Paths:
    """Every file the pipeline reads or writes, relative to one project root."""

    root: Path

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def raw_manifest(self) -> Path:
        return self.raw / "manifest.json"

    @property
    def processed(self) -> Path:
        return self.root / "data" / "processed"

    def split(self, name: str) -> Path:
        return self.processed / f"{name}.csv"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def challenger(self) -> Path:
        """The model `train` produced, with its registry coordinates."""
        return self.models / "challenger.zip"

    @property
    def champion(self) -> Path:
        """Local copy of the registry's champion: the API's fallback when MLflow is down."""
        return self.models / "champion.zip"

    @property
    def report_time(self) -> ReportTimePaths:
        """The report-time model's files: the same roles as the seed's, each in a folder of its own."""
        return ReportTimePaths(self.root)

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def train_report(self) -> Path:
        return self.reports / "train.json"

    @property
    def test_by_month(self) -> Path:
        return self.reports / "test_by_month.json"

    @property
    def backtest(self) -> Path:
        return self.reports / "backtest.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def plots(self) -> Path:
        return self.reports / "plots"

    @property
    def mlruns(self) -> Path:
        return self.root / "mlruns"

    @property
    def prometheus(self) -> Path:
        """Prometheus' alert rules, their unit tests and the compose scrape config (deploy/prometheus)."""
        return self.root / "deploy" / "prometheus"


@dataclass(frozen=True)
class ReportTimePaths:
    """The report-time model's pipeline files (DVC outputs are folders: a run that does not train
    that model, `pipeline.models`, writes `skipped.json` there instead)."""

    root: Path

    @property
    def processed(self) -> Path:
        return self.root / "data" / "processed" / "report_time"

    def split(self, name: str) -> Path:
        return self.processed / f"{name}.parquet"

    @property
    def trained(self) -> Path:
        """`train`'s output folder: challenger.zip and train.json."""
        return self.root / "models" / "report_time" / "trained"

    @property
    def challenger(self) -> Path:
        return self.trained / "challenger.zip"

    @property
    def train_report(self) -> Path:
        return self.trained / "train.json"

    @property
    def champion(self) -> Path:
        """Local copy of the registry's report-time champion (in `evaluate`'s folder models/report_time/served)."""
        return self.root / "models" / "report_time" / "served" / "champion.zip"

    @property
    def evaluated(self) -> Path:
        """`evaluate`'s output folder: metrics.json, test_by_month.json, plots/ (the test period)."""
        return self.root / "reports" / "report_time" / "evaluated"

    @property
    def metrics(self) -> Path:
        return self.evaluated / "metrics.json"

    @property
    def test_by_month(self) -> Path:
        return self.evaluated / "test_by_month.json"

    @property
    def test_plots(self) -> Path:
        return self.evaluated / "plots"

    @property
    def backtest(self) -> Path:
        """The rolling-origin backtest's results (accidents.pipeline.backtest --model report_time)."""
        return self.root / "reports" / "report_time" / "backtest.json"

    @property
    def validation_plots(self) -> Path:
        """`train`'s validation plots (logged to MLflow; not a DVC output, like the seed's)."""
        return self.root / "reports" / "report_time" / "validation"


def paths() -> Paths:
    return Paths(project_dir())


def load_params(path: Path | None = None) -> dict[str, Any]:
    with open(path or paths().params, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def tracking_uri() -> str:
    """MLflow tracking URI: env first, else the local server `make mlflow` starts."""
    return os.environ.get(ENV_TRACKING_URI) or f"http://{DEFAULT_HOST}:{MLFLOW_PORT}"


_EXPORTED = {
    "MODEL_NAME": MODEL_NAME,
    "REPORT_MODEL_NAME": REPORT_MODEL_NAME,
    "CHAMPION_ALIAS": CHAMPION_ALIAS,
    "CHALLENGER_ALIAS": CHALLENGER_ALIAS,
    "DAG_ID": DAG_ID,
    "API_PORT": API_PORT,
    "MLFLOW_PORT": MLFLOW_PORT,
    "AIRFLOW_PORT": AIRFLOW_PORT,
    "PROMETHEUS_PORT": PROMETHEUS_PORT,
    "EXPERIMENT_NAME": EXPERIMENT_NAME,
}


def main(argv: list[str]) -> int:
    """`python -m accidents.config KEY` prints one value, for shell scripts and Makefiles."""
    if len(argv) != 1 or argv[0] not in _EXPORTED:
        print(f"usage: python -m accidents.config {{{'|'.join(_EXPORTED)}}}", file=sys.stderr)
        return 2
    print(_EXPORTED[argv[0]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
