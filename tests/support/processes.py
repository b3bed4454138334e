"""Real processes for tests: free loopback ports, start in their own session, stop by PID."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _primary_group(user: str | None) -> int | None:
    return None if user is None else pwd.getpwnam(user).pw_gid


class ManagedProcess:
    """A child process in its own process group, logging to a file, stopped by its PID."""

    def __init__(
        self,
        cmd: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,  # run as this account (needs root): servers that refuse root
    ):
        self.cmd = cmd
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            group=_primary_group(user),
            extra_groups=[] if user else None,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Signal the whole process group (workers included)."""
        if self.alive():
            os.killpg(self.process.pid, signum)

    def stop(self, timeout: float = 20.0) -> None:
        try:
            self.signal(signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass
        finally:
            self._kill_leftovers()
            self._log.close()

    def _kill_leftovers(self) -> None:
        """Children that outlived the leader in the same process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_http(url: str, process: ManagedProcess | None = None, timeout: float = 120.0, status: int = 200) -> None:
    """Wait until GET `url` answers `status`; fail with the process log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise RuntimeError(f"{process.cmd[0]} exited ({process.process.returncode}):\n{process.log_tail()}")
        try:
            if requests.get(url, timeout=2).status_code == status:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    tail = process.log_tail() if process else ""
    raise TimeoutError(f"{url} not answering {status} after {timeout:.0f} s\n{tail}")


def start_service(
    cmd: list[str], log_path: Path, health_url: str, env: dict[str, str] | None = None, cwd: Path | None = None,
    timeout: float = 120.0,
) -> ManagedProcess:  # fmt: skip
    """Start a server and wait until `health_url` answers 200; stopped again if it never does."""
    process = ManagedProcess(cmd, log_path, env=env, cwd=cwd)
    try:
        wait_http(health_url, process, timeout=timeout)
    except BaseException:
        process.stop()
        raise
    return process
