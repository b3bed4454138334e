"""A real, throw-away PostgreSQL server for tests (Debian's `postgresql` package).

`initdb` makes a cluster in a temporary folder, `postgres` serves it on a free 127.0.0.1 port
(TCP only, password auth as in docker compose), and `stop()` ends it by PID (fast shutdown) and
removes the folder. PostgreSQL refuses to run as root: under root (CI) the cluster belongs to
`nobody`, in a private folder of the system temp dir (pytest's own temp dirs are 0700 root).
Each test that needs a fresh users DB gets its own database (`new_database`).
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

from tests.support.processes import ManagedProcess, free_port

BACKENDS = ("sqlite", "postgresql")  # the users-DB backends the API and security suites run on
SUPERUSER = "api"  # the compose stack's role name for the users DB
UNPRIVILEGED = "nobody"
INSTALL_HINT = "install Debian's `postgresql` package (apt-get install postgresql): .ci/run does it in CI"


def server_binaries() -> Path | None:
    """The folder holding initdb and postgres: on PATH, else Debian's /usr/lib/postgresql/<major>/bin."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return Path(initdb).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
    return versions[-1].parent if versions else None


@dataclass
class PostgresServer:
    folder: Path
    port: int
    password: str
    process: ManagedProcess
    _names: count = field(default_factory=lambda: count(1))

    def url(self, database: str = "postgres") -> str:
        """The same URL form as compose's DATABASE_URL (psycopg 3 driver, password auth over TCP)."""
        return f"postgresql+psycopg://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):  # -> psycopg.Connection
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password, dbname=database, autocommit=True
        )

    def new_database(self, prefix: str = "test") -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        name = f"{prefix}_{next(self._names)}"
        with self.connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: open sessions are closed, not waited for), by PID; then the folder."""
        try:
            if self.process.alive():
                os.kill(self.process.pid, signal.SIGINT)
                self.process.process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        finally:
            self.process.stop()
            shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres(log_dir: Path, timeout: float = 60.0) -> PostgresServer:
    binaries = server_binaries()
    if binaries is None:
        raise RuntimeError(f"no PostgreSQL server found (initdb, postgres): {INSTALL_HINT}")
    as_root = os.geteuid() == 0
    user = UNPRIVILEGED if as_root else None
    folder = Path(tempfile.mkdtemp(prefix="accidents-pg-")) if as_root else Path(tempfile.mkdtemp(dir=log_dir))
    data = folder / "data"
    password = secrets.token_urlsafe(16)
    password_file = folder / "password"
    password_file.write_text(password)
    if as_root:
        shutil.chown(folder, UNPRIVILEGED)
        shutil.chown(password_file, UNPRIVILEGED)
    initdb = [
        str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={password_file}",
        "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
    ]  # fmt: skip
    done = subprocess.run(initdb, user=user, capture_output=True, text=True, timeout=120, cwd=folder)
    password_file.unlink()
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed ({done.returncode}) as {user or getpass.getuser()}:\n{done.stderr}")
    port = free_port()
    server = [
        str(binaries / "postgres"), "-D", str(data), "-p", str(port),
        "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
        # throw-away data: no durability needed, and tests start many connections
        "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200",
    ]  # fmt: skip
    process = ManagedProcess(server, log_dir / f"postgres-{port}.log", cwd=folder, user=user)
    postgres = PostgresServer(folder, port, password, process)
    try:
        _wait_accepting(postgres, timeout)
    except BaseException:
        postgres.stop()
        raise
    return postgres


def _wait_accepting(postgres: PostgresServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not postgres.process.alive():
            raise RuntimeError(
                f"postgres exited ({postgres.process.process.returncode}):\n{postgres.process.log_tail()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", postgres.port), timeout=1), postgres.connect():
                return
        except Exception:
            time.sleep(0.2)
    raise TimeoutError(f"PostgreSQL not accepting connections after {timeout:.0f} s\n{postgres.process.log_tail()}")


def users_database(request, backend: str) -> str | None:
    """The DATABASE_URL of a fresh users DB on `backend`: None for SQLite (the file under the
    project's state dir), else a new database on the session's server (fixture `postgres`)."""
    return None if backend == "sqlite" else request.getfixturevalue("postgres").new_database()
