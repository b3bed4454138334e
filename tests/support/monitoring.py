"""Helpers of the prediction log tests: Prometheus samples, polling, an API on a registry of its own."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from accidents.model.model_store import ModelBundle
from tests.api.conftest import ApiServer, project_with_champion, register, set_champion
from tests.support.project import REPO, start_mlflow


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    rendered = ",".join(f'{key}="{value}"' for key, value in labels.items())
    wanted = f"{name}{{{rendered}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def run_cli(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python -m module args` from the checkout; asserts exit 0 (with its output when not)."""
    result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=300)  # fmt: skip
    assert result.returncode == 0, f"{module} exited {result.returncode}:\n{result.stdout}\n{result.stderr[-3000:]}"
    return result


def wait_for(condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached after {timeout} s"
        time.sleep(0.1)


@dataclass
class RegistryServed:
    uri: str  # the registry's tracking URI
    version: str  # its champion
    project: Path
    log_url: str  # the API's prediction log
    server: ApiServer


@contextmanager
def api_on_own_registry(api_server: Callable[..., ApiServer], bundle: ModelBundle, tmp_path: Path,
                        **env: str) -> Iterator[RegistryServed]:  # fmt: skip
    """A real MLflow server whose champion is `bundle`, and a real uvicorn serving it."""
    mlflow_process, uri = start_mlflow(tmp_path / "mlflow")
    try:
        version = register(uri, bundle)
        set_champion(uri, version)
        project = project_with_champion(tmp_path / "project", bundle)
        server = api_server(ACCIDENTS_PROJECT_DIR=str(project), STATE_DIR=str(tmp_path / "state"),
                            MLFLOW_TRACKING_URI=uri, **env)  # fmt: skip
        yield RegistryServed(uri, version, project, f"sqlite:///{tmp_path / 'state' / 'predictions.db'}", server)
    finally:
        mlflow_process.stop()
