"""The `accidents` command: every entry point of the package has a short name, each name runs its
module with the same arguments and exit code, and nothing is listed that does not exist."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from accidents.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "accidents"
ACCIDENTS = Path(sys.executable).parent / "accidents"  # the console script of pyproject.toml


def runnable_modules() -> set[str]:
    """Every module of the package that runs as a program (has a __main__ guard)."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8") and path.name != "cli.py":
            found.add(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    return found


def test_every_runnable_module_has_exactly_one_command():
    modules = [module for module, _ in COMMANDS.values()]
    assert len(modules) == len(set(modules))
    assert set(modules) == runnable_modules()
    assert all(importlib.util.find_spec(module) for module in modules)


def accidents(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ACCIDENTS), *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_help_lists_every_command():
    listed = accidents("--help")
    assert listed.returncode == 0
    assert all(f"  {name} " in listed.stdout for name in COMMANDS)


def test_a_command_runs_its_module_with_the_same_output_and_exit_code():
    short = accidents("config", "MLFLOW_PORT")
    long = subprocess.run([sys.executable, "-m", "accidents.config", "MLFLOW_PORT"], capture_output=True, text=True,
                          timeout=120, cwd=REPO)  # fmt: skip
    assert (short.returncode, short.stdout) == (long.returncode, long.stdout) == (0, long.stdout)
    assert long.stdout.strip().isdigit()
    assert accidents("config").returncode == 2  # the module's usage error comes through


def test_an_unknown_command_is_a_usage_error():
    result = accidents("no-such-command")
    assert result.returncode == 2
    assert "unknown command 'no-such-command'" in result.stderr


class RefusingApi(BaseHTTPRequestHandler):
    """An API that refuses every login (401)."""

    def do_POST(self) -> None:
        self.send_response(401)
        self.end_headers()
        self.wfile.write(b"no")

    def log_message(self, *args: object) -> None:
        pass


def test_a_modules_exit_message_reaches_stderr():
    """A module that stops with SystemExit("why") prints why and exits 1, under the short name too
    (replay's failed login, against a real HTTP server on 127.0.0.1)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = accidents("replay", "--from", "2021-07-01", "--to", "2021-07-01", "--limit", "1", "--source",
                           "official", "--url", url, "--no-progress")  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert f"login to {url} as 'admin' failed: 401" in result.stderr
