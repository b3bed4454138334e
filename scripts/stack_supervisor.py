"""A small process supervisor for the local stack (used by scripts/run_stack.py).

Each service runs in its own session (process group), its output is prefixed on the console and
copied to `<logs>/<name>.log`; stopping signals the whole group and then any descendant that
escaped it (Airflow runs task commands in new sessions), by PID. Standard library only.

Why not honcho's Manager (or supervisord): they prefix output and stop everything, which is
the easy part here; what `make run` needs besides is start order with readiness gates between
starts (MLflow healthy before the first training, the Airflow API server before the scheduler),
one-off commands streamed like services (`airflow db migrate`, the first pipeline run), stopping
the descendants that leave the process group (Airflow task commands start their own sessions),
and PDEATHSIG so nothing outlives a killed supervisor. honcho starts all processes at once and
signals only the groups it created; its Printer is ~40 lines like `Console`. Neither is in the lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1
COLORS = ("36", "35", "33", "32", "34", "31", "96", "95")


class StackError(Exception):
    """A problem to report in one clear sentence (no traceback); `make run` exits with `exit_code`."""

    exit_code = 1


class ConfigurationError(StackError):
    """Nothing was started: a setting, a port or a venv to fix first."""

    exit_code = 2


def port_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be bound right now (None when it is free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like the servers: TIME_WAIT is fine
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return f"{host}:{port} is already in use"
            return f"cannot bind {host}:{port} ({error.strerror})"
    return None


def http_get(url: str, timeout: float = 3.0, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body) of GET `url`; status 0 when nothing answers."""
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 - http(s) URLs we build
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def post_json(url: str, payload: object, timeout: float = 10.0) -> object:
    """POST `payload` as JSON and decode the JSON answer; raises OSError (URLError) on failure."""
    request = urllib.request.Request(  # noqa: S310 - http(s) URLs we build
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.load(response)


try:  # loaded once in the parent: the child only makes the system call
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM if the supervisor dies without stopping us (Linux)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def descendants(pid: int) -> list[int]:
    """PIDs of every live descendant of `pid` (from /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Service:
    """One child process: own session, prefixed output, log file, stopped by PID."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        env: Mapping[str, str],
        log_dir: Path,
        cwd: Path | None = None,
        console: Callable[[str], None] | None = None,
        quiet: re.Pattern[str] | None = None,
    ):
        self.name = name
        self.cmd = list(cmd)
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self.console = console or print
        self.quiet = quiet  # lines matching it go to the log file only (e.g. health-check polls)
        self.tail: deque[str] = deque(maxlen=60)
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.expected_exit = False

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only: it stops us in order
            preexec_fn=_die_with_parent if _LIBC is not None else None,
        )
        self._reader = threading.Thread(target=self._pump, name=f"log-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(self.cmd)}\n")
            log.flush()
            for raw in iter(self.process.stdout.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                self.tail.append(line)
                log.write(line + "\n")
                log.flush()
                if not (self.quiet and self.quiet.search(line)):
                    self.console(line)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

    def wait(self, timeout: float | None = None) -> int:
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        if self._reader:
            self._reader.join(timeout=5)
        return code

    def begin_stop(self) -> set[int]:
        """SIGTERM the process group; returns the descendants seen (some run in their own sessions)."""
        if self.process is None:
            return set()
        self.expected_exit = True
        pid = self.process.pid
        strays = set(descendants(pid))
        if self.alive():
            _signal_group(pid, signal.SIGTERM)
        for stray in strays:  # outside the group (e.g. a running task's command): SIGTERM them too,
            with contextlib.suppress(ProcessLookupError, PermissionError):  # or the scheduler waits for them
                if os.getsid(stray) != pid:
                    os.kill(stray, signal.SIGTERM)
        return strays

    def finish_stop(self, strays: set[int]) -> None:
        """SIGKILL what is left of the group, then the descendants that escaped it, by PID."""
        if self.process is None:
            return
        pid = self.process.pid
        if self.alive():
            strays |= set(descendants(pid))
        _signal_group(pid, signal.SIGKILL)  # leftovers of the group, leader included
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        for stray in strays:  # e.g. Airflow runs task commands in new sessions
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if _is_running(stray):
                    os.kill(stray, signal.SIGKILL)
        if self._reader:
            self._reader.join(timeout=5)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class Console:
    """Prefixed, optionally coloured lines on stdout (one writer at a time)."""

    def __init__(self, color: bool | None = None):
        self.color = sys.stdout.isatty() if color is None else color
        self._lock = threading.Lock()
        self._width = 10

    def printer(self, name: str, index: int) -> Callable[[str], None]:
        prefix = f"{name:<{self._width}}|"
        if self.color:
            prefix = f"\033[{COLORS[index % len(COLORS)]}m{prefix}\033[0m"

        def write(line: str) -> None:
            self.say(f"{prefix} {line}")

        return write

    def say(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)


class Supervisor:
    """Starts services, waits for them, watches them, stops them all (reverse order)."""

    def __init__(self, log_dir: Path, console: Console | None = None):
        self.log_dir = log_dir
        self.console = console or Console()
        self.services: list[Service] = []
        self._stopping = threading.Event()

    def say(self, text: str) -> None:
        self.console.say(f"{'stack':<10}| {text}")

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None = None,
        quiet: re.Pattern[str] | None = None,
    ) -> Service:
        if self._stopping.is_set():
            raise KeyboardInterrupt
        printer = self.console.printer(name, len(self.services))
        service = Service(name, cmd, env, self.log_dir, cwd=cwd, console=printer, quiet=quiet)
        self.services.append(service)
        service.start()
        self.say(f"started {name} (pid {service.pid})")
        return service

    def run(self, name: str, cmd: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> int:
        """Run a one-off command to completion (output streamed like a service)."""
        service = self.start(name, cmd, env, cwd)
        while service.alive():
            if self._stopping.is_set():
                raise KeyboardInterrupt  # stop_all() stops it with the rest
            time.sleep(0.2)
        code = service.wait()
        service.expected_exit = True
        self.services.remove(service)
        return code

    def wait_until(
        self, what: str, check: Callable[[], bool], services: Sequence[Service], timeout: float, interval: float = 0.5
    ) -> float:
        """Poll `check` until true; fail early when one of `services` exits. Returns the seconds waited."""
        started = time.monotonic()
        while True:
            if self._stopping.is_set():
                raise KeyboardInterrupt
            for service in services:
                if not service.alive():
                    service.wait(timeout=5)  # its last lines are read before they are reported
                    tail = "\n".join(list(service.tail)[-25:])
                    raise StackError(
                        f"{service.name} exited with code {service.returncode()} while waiting for {what}; "
                        f"last lines (full log: {service.log_path}):\n{tail}"
                    )
            if check():
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise StackError(f"{what} not ready after {timeout:.0f} s (logs under {self.log_dir})")
            time.sleep(interval)

    def watch(self) -> Service | None:
        """Block until a stop is requested (None) or a service exits on its own (that service)."""
        while not self._stopping.wait(0.5):
            for service in self.services:
                if not service.alive() and not service.expected_exit:
                    service.wait(timeout=5)  # its output fully read: the caller shows the tail
                    return service
        return None

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            if self._stopping.is_set():
                return
            self.say(f"{signal.Signals(signum).name}: stopping")
            self._stopping.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGHUP, handler)

    def stop_all(self, timeout: float = 20.0) -> bool:
        """SIGTERM every service at once (last started first), wait, then SIGKILL what is left.
        Returns whether there was anything to stop."""
        self._stopping.set()
        services = list(reversed(self.services))
        if not services:
            return False
        strays = {service.name: service.begin_stop() for service in services}
        if any(service.alive() for service in services):
            self.say("stopping " + ", ".join(f"{s.name} (pid {s.pid})" for s in services if s.alive()))
        deadline = time.monotonic() + timeout
        while any(service.alive() for service in services) and time.monotonic() < deadline:
            time.sleep(0.1)
        for service in services:
            if service.alive():
                self.say(f"{service.name} still running after {timeout:.0f} s: killing it")
            service.finish_stop(strays[service.name])
        self.services.clear()
        return True
