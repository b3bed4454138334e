"""Retraining as a local background process (`<project>/retraining_run.sh` by default).

Single flight across API processes and restarts: the run's child process inherits an exclusive
`flock` on `<state>/retrain/lock`, so the lock is held exactly as long as the run lives. Run
records are JSON files beside it; the run's output goes to `<run_id>.log`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import shlex
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

from accidents.config import ENV_RUN_REASON
from api.orchestrators.base import (
    Orchestrator,
    OrchestratorUnavailableError,
    RetrainConflictError,
    RetrainRun,
    RunNotFoundError,
    RunState,
)

logger = logging.getLogger(__name__)
RUN_ID = re.compile(r"^local-\d{8}T\d{6}-[0-9a-f]{8}$")


class LocalOrchestrator(Orchestrator):
    name = "local"

    def __init__(self, command: str, state_dir: Path, cwd: Path, env: dict[str, str]):
        self.command = command
        self.folder = state_dir / "retrain"
        self.cwd = cwd
        self.env = env
        self._lock = threading.Lock()
        self._children: dict[str, subprocess.Popen[bytes]] = {}  # runs this process started and reaps

    def trigger(self, reason: str) -> RetrainRun:
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise RetrainConflictError(_read_holder(descriptor)) from None
                return self._start(descriptor, reason)
            finally:
                os.close(descriptor)  # the child keeps its inherited copy (and the lock) until it exits

    def _start(self, descriptor: int, reason: str) -> RetrainRun:
        run_id = f"local-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, run_id.encode(), 0)
        started = _now()
        try:
            with open(self.folder / f"{run_id}.log", "ab") as log:
                process = subprocess.Popen(
                    shlex.split(self.command),
                    cwd=self.cwd,
                    env={**self.env, ENV_RUN_REASON: reason},  # the pipeline tags its MLflow run with it
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(descriptor,),
                )
        except (OSError, ValueError) as error:
            self._write(RetrainRun(run_id, RunState.FAILED, self.name, started, _now(), f"cannot start: {error}",
                                   reason=reason))  # fmt: skip
            raise OrchestratorUnavailableError(
                f"cannot start the retraining command {self.command!r}: {error}"
            ) from error
        run = RetrainRun(run_id, RunState.RUNNING, self.name, started, detail=f"pid {process.pid}", reason=reason)
        self._write(run, pid=process.pid)
        self._children[run_id] = process
        threading.Thread(target=self._wait, args=(run, process), name=f"retrain-{run_id}", daemon=True).start()
        logger.info("retraining run %s started: %s (pid %d)", run_id, self.command, process.pid)
        return run

    def _wait(self, run: RetrainRun, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        state = RunState.SUCCESS if code == 0 else RunState.FAILED
        detail = f"exit code {code}; log: {self.folder / f'{run.run_id}.log'}"
        self._write(RetrainRun(run.run_id, state, self.name, run.started_at, _now(), detail, reason=run.reason))
        self._children.pop(run.run_id, None)
        logger.info("retraining run %s finished: %s (exit code %d)", run.run_id, state, code)

    def status(self, run_id: str) -> RetrainRun:
        path = self.folder / f"{run_id}.json"
        if not RUN_ID.match(run_id) or not path.is_file():
            raise RunNotFoundError(f"no retraining run {run_id}")
        # before the read: the waiter writes the final record, then forgets the child, so a run
        # seen as no child of ours here is read with its outcome (not as a lost one)
        orphan = run_id not in self._children
        record = json.loads(path.read_text(encoding="utf-8"))
        pid = record.pop("pid", None)
        run = RetrainRun(**record)
        if run.state == RunState.RUNNING and orphan and pid is not None and not _alive(pid):
            # started by an API process that is gone before the run ended: its exit code is lost
            return RetrainRun(run.run_id, RunState.FAILED, self.name, run.started_at, None, "outcome lost",
                              reason=run.reason)  # fmt: skip
        return run

    def _write(self, run: RetrainRun, pid: int | None = None) -> None:
        record = run.as_dict() | ({"pid": pid} if pid is not None else {})
        path = self.folder / f"{run.run_id}.json"
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps(record, indent=2), encoding="utf-8")
        os.replace(temp, path)


def _read_holder(descriptor: int) -> str | None:
    return os.pread(descriptor, 200, 0).decode(errors="replace").strip() or None


def _alive(pid: int) -> bool:
    """For runs another (now gone) API process started: init reaps them, so no zombie lingers."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
