"""Airflow settings for the DAG tests: a throw-away AIRFLOW_HOME, set before Airflow is imported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = tempfile.mkdtemp(prefix="airflow-test-home-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
# The DAGs' shared helpers (accidents_dags): `import airflow` puts this folder on sys.path.
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(Path(__file__).resolve().parents[2] / "airflow" / "plugins")
# The DAG file reads these; the tests check the defaults the stack relies on.
for name in (
    "ACCIDENTS_DAG_ID",
    "ACCIDENTS_RETRAIN_SCHEDULE",
    "ACCIDENTS_SCHEDULE_START",
    "ACCIDENTS_PROJECT_DIR",
    "ACCIDENTS_MONITORING_SCHEDULE",
    "ACCIDENTS_MONITORING_DAG_ID",
):
    os.environ.pop(name, None)
