"""Throw-away copies of the project where the real pipeline (DVC + MLflow) runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from accidents.config import ENV_DATA_DIR, ENV_OFFLINE, ENV_PROJECT_DIR, ENV_TRACKING_URI
from tests.support.processes import ManagedProcess, free_port, start_service

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data" / "baac"


def data_dir() -> Path:
    """The real BAAC mirror: BAAC_DATA_DIR, else ../shared/data/baac beside the checkout."""
    return Path(os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR)


def start_mlflow(state_dir: Path) -> tuple[ManagedProcess, str]:
    """A real MLflow server (scripts/mlflow_server.sh) on a free port with its own SQLite store."""
    port = free_port()
    env = {**os.environ, "MLFLOW_PORT": str(port), "MLFLOW_HOST": "127.0.0.1", "MLFLOW_STATE_DIR": str(state_dir)}
    uri = f"http://127.0.0.1:{port}"
    script = str(REPO / "scripts" / "mlflow_server.sh")
    return start_service(["bash", script], state_dir / "server.log", f"{uri}/health", env=env, timeout=180), uri


@dataclass
class Project:
    """A git repository holding a copy of the project files, with the real venv linked in."""

    root: Path
    tracking_uri: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            ENV_PROJECT_DIR: str(self.root),
            ENV_TRACKING_URI: self.tracking_uri,
            ENV_DATA_DIR: str(data_dir()),
            "PATH": f"{self.root / '.venv' / 'bin'}:{os.environ['PATH']}",
        }
        env.pop(ENV_OFFLINE, None)
        env.update(extra)
        return {key: value for key, value in env.items() if value is not None}

    def set_params(self, section: str, **values: object) -> None:
        params_path = self.root / "params.yaml"
        params = yaml.safe_load(params_path.read_text())
        params[section].update(values)
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))

    def run(self, *cmd: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            list(cmd), cwd=self.root, env=env or self.env(), capture_output=True, text=True, timeout=900
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def dvc(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return self.run(str(self.root / ".venv" / "bin" / "dvc"), *args, env=env, check=check)

    def retrain(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """./retraining_run.sh: `dvc repro` plus `dvc push` when a default remote is set."""
        return self.run(str(self.root / "retraining_run.sh"), *args, env=env, check=check)


def copy_project(dest: Path, tracking_uri: str, max_rows: int | None = 6000) -> Project:
    """Copy the files git knows (tracked or not ignored) into a new git repo at `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file() and name != "dvc.lock":
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dest, check=True)
    project = Project(dest, tracking_uri)
    if max_rows:
        project.set_params("preprocess", max_rows=max_rows)
    return project
