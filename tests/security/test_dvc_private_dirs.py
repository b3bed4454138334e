"""The mitigation of PYSEC-2026-2447 (security/audit-exceptions.txt) holds for the local stack.

`make setup` gives this checkout a DVC site-cache of its own (core.site_cache_dir in
.dvc/config.local) and makes it, the DVC cache and .dvc/tmp private (0700) to the user who runs
DVC. security/dvc_private_dirs.py checks that; here it runs on the checkout itself and, to show
it can fail, on throw-away DVC projects with DVC's defaults and with a widened mode. The compose
test runs the same check inside the api and scheduler containers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "security" / "dvc_private_dirs.py"
DVC = Path(sys.executable).with_name("dvc")
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1"}


def check(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), str(project)], capture_output=True, text=True, timeout=120, env=ENV
    )


def dvc(project: Path, *args: str) -> None:
    subprocess.run([str(DVC), *args], cwd=project, check=True, capture_output=True, timeout=120, env=ENV)


def test_the_checkout_after_make_setup_keeps_dvc_caches_private():
    result = check(ROOT)
    assert result.returncode == 0, f"run `make setup` first?\n{result.stdout}{result.stderr}"
    configured = subprocess.run(
        [str(DVC), "config", "core.site_cache_dir"], cwd=ROOT, capture_output=True, text=True, check=True, env=ENV
    ).stdout.strip()
    assert Path(configured) == ROOT / ".dvc" / "tmp" / "site-cache"


def test_dvc_defaults_fail_the_check_and_private_dirs_pass_it(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    dvc(project, "init", "--no-scm", "-q")
    default = check(project)
    assert default.returncode == 1
    assert "no core.site_cache_dir" in default.stdout

    site = project / ".dvc" / "tmp" / "site-cache"
    (project / ".dvc" / "cache").mkdir()
    site.mkdir(parents=True)
    for path in (project / ".dvc" / "cache", project / ".dvc" / "tmp", site):
        path.chmod(0o700)
    dvc(project, "config", "--local", "core.site_cache_dir", str(site))
    dvc(project, "status", "-q")  # DVC creates its site-cache entries under ours
    held = check(project)
    assert held.returncode == 0, held.stdout + held.stderr

    site.chmod(0o755)
    widened = check(project)
    assert widened.returncode == 1
    assert "mode 0755, expected 0700" in widened.stdout
