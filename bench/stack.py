"""The stack's start budget of `make bench` (bench/run.py): seconds from launching
scripts/run_stack.py (what `make run` runs) to "stack ready" (goal: warm start <= 60 s). The
first start creates the Airflow DB and trains the first model; the warm restarts are the goal's.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from tests.support.processes import ManagedProcess, free_port
from tests.support.project import REPO, Project


def time_stack_start(project: Project, log_dir: Path) -> float:
    """Seconds from launching scripts/run_stack.py (what `make run` runs) to "stack ready"."""
    ports = {name: str(free_port()) for name in ("API_PORT", "MLFLOW_PORT", "AIRFLOW_PORT")}
    env = project.env(**ports, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{ports['MLFLOW_PORT']}")
    cmd = [str(project.root / ".venv" / "bin" / "python"), str(project.root / "scripts" / "run_stack.py"), "--no-color"]
    started = time.monotonic()
    process = ManagedProcess(cmd, log_dir / f"stack-{ports['API_PORT']}.log", env=env, cwd=project.root)
    try:
        while "stack ready" not in process.log_tail(400):
            if not process.alive() or time.monotonic() - started > 600:
                raise RuntimeError(f"run_stack.py did not come up:\n{process.log_tail(60)}")
            time.sleep(0.2)
        return round(time.monotonic() - started, 1)
    finally:
        process.stop(timeout=60)


def bench_stack(project: Project, log_dir: Path, repeats: int) -> dict[str, Any]:
    """First start (Airflow DB created, first model trained), then warm restarts."""
    (project.root / ".venv-airflow").symlink_to(REPO / ".venv-airflow")
    first = time_stack_start(project, log_dir)
    warm = [time_stack_start(project, log_dir) for _ in range(repeats)]
    return {"first_start_seconds": first, "warm_start_seconds": statistics.median(warm), "warm_runs": warm}


def markdown(stack: dict[str, Any]) -> list[str]:
    return [
        "",
        f"`make run` to all services healthy: first start {stack['first_start_seconds']:.0f} s "
        f"(trains the first model), warm start {stack['warm_start_seconds']:.0f} s (goal <= 60 s).",
    ]
