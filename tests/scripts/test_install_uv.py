"""`make run`'s first step on a PEP 668 system Python (Debian 12, Ubuntu 24.04, Homebrew): with no uv
on PATH, the Makefile's `uv` target used to run `python3 -m pip install uv`, which such a Python
refuses ("externally-managed-environment"). Here the real `make uv` runs with PATH limited to the
system's /usr/bin (Debian 12's python3, whose stdlib holds the EXTERNALLY-MANAGED marker, and no
uv): it must install uv into its private venv (UV_HOME) and find it there afterwards, whatever the
user's PATH. Measured: ~30 s (pip downloads uv).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.project import REPO

SYSTEM_BIN = "/usr/bin:/bin"


def pep668_python() -> Path:
    """The system's python3 when it is externally managed (PEP 668), else the test cannot say anything."""
    python = Path("/usr/bin/python3")
    if not python.exists():
        pytest.skip("no /usr/bin/python3: no system Python to try a PEP 668 setup on")
    stdlib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    if not (Path(stdlib) / "EXTERNALLY-MANAGED").exists():
        pytest.skip(f"{python} is not externally managed (no EXTERNALLY-MANAGED in {stdlib})")
    return python


def system_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV", "UV_"))}
    return {**env, "PATH": SYSTEM_BIN, **extra}


def make(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args], capture_output=True, text=True,
                          env=system_env(**env), timeout=600)  # fmt: skip


def test_make_installs_uv_where_pip_refuses_the_system_python(tmp_path):
    pep668_python()
    assert subprocess.run(["bash", "-c", "command -v uv"], env=system_env()).returncode != 0, "uv on /usr/bin"
    refused = subprocess.run(["python3", "-m", "pip", "install", "--dry-run", "uv"], capture_output=True, text=True,
                             env=system_env())  # fmt: skip
    assert refused.returncode != 0 and "externally-managed-environment" in refused.stderr  # the old way fails here

    home = tmp_path / "uv"
    first = make("uv", f"UV_HOME={home}")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (home / "bin" / "uv").is_file() and "installing it into a private venv" in first.stderr
    again = make("uv", f"UV_HOME={home}")
    assert again.returncode == 0 and again.stdout + again.stderr == ""  # found: nothing installed twice
    found = make("--eval", "where-uv: ; @command -v uv", "where-uv", f"UV_HOME={home}")
    assert found.stdout.strip() == str(home / "bin" / "uv")  # recipes and scripts use it, PATH or not


def test_without_venv_or_pipx_it_stops_with_the_commands_to_run(tmp_path):
    done = subprocess.run(["bash", str(REPO / "scripts" / "install_uv.sh"), str(tmp_path / "uv")],
                          capture_output=True, text=True, env=system_env(PYTHON="false"))  # fmt: skip
    assert done.returncode == 1
    assert "sudo apt-get install python3-venv" in done.stderr and "astral.sh/uv/install.sh" in done.stderr
    assert not (tmp_path / "uv").exists()  # no half-made venv left behind
