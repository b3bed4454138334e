"""`make test`'s last line (scripts/test_summary.py) on real pytest output: a tiny test folder with a
passing, a skipped and (for one suite) a failing test is run by the real pytest with the flags
scripts/run_tests.sh gives it (-rs, --junitxml into the report folder), a container suite's
SKIPPED reason file is written by the real compose suite pointed at no engine; the summary must name what ran and
what was skipped and why, pass outside CI, and fail with CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.project import REPO

SUMMARY = REPO / "scripts" / "test_summary.py"
TESTS = """
import pytest

def test_runs():
    assert True

def test_needs_wrk():
    pytest.skip("wrk is not installed (apt-get install -y wrk)")
"""


def run_pytest(report: Path, name: str, source: str) -> int:
    """The real pytest on a one-file folder, as run_tests.sh's run_pytest calls it; its exit status."""
    folder = report.parent / f"{name}-tests"
    folder.mkdir()
    (folder / "test_tiny.py").write_text(source, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", f"--junitxml={report / f'{name}.xml'}", "-p", "no:cacheprovider",
         "-q", str(folder)], capture_output=True, text=True, cwd=folder)  # fmt: skip
    with (report / "results.tsv").open("a", encoding="utf-8") as results:
        results.write(f"{name}\t{done.returncode}\n")
    return done.returncode


def summary(report: Path, ci: bool) -> tuple[int, list[str]]:
    env = {key: value for key, value in os.environ.items() if key != "CI"} | ({"CI": "true"} if ci else {})
    done = subprocess.run([sys.executable, str(SUMMARY), str(report)], capture_output=True, text=True, env=env)
    return done.returncode, done.stdout.strip().splitlines()


def test_the_last_line_names_every_skip_and_its_reason(tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    (report / "results.tsv").write_text("lint\t0\n", encoding="utf-8")
    assert run_pytest(report, "main-suite", TESTS) == 0
    # the real compose suite, as run_tests.sh's run_containers calls it, with no engine to answer
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env |= {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "SKIP_REASON_FILE": str(report / "compose.skipped")}
    compose = subprocess.run(["bash", str(REPO / "scripts" / "docker" / "compose_test.sh")], capture_output=True,
                             text=True, timeout=120, env=env)  # fmt: skip
    assert compose.returncode == 0 and "SKIPPED" in compose.stdout, compose.stdout + compose.stderr
    with (report / "results.tsv").open("a", encoding="utf-8") as results:
        results.write(f"compose\t{compose.returncode}\n")

    status, lines = summary(report, ci=False)
    assert status == 0, lines
    assert "all suites passed" not in "\n".join(lines)
    assert "skipped: main-suite: test_tiny::test_needs_wrk: wrk is not installed (apt-get install -y wrk)" in lines
    assert lines[-1] == (
        "passed, but NOT everything ran | ran: lint, main-suite (2 tests, 1 skipped); skipped: "
        "main-suite: 1 test (wrk is not installed (apt-get install -y wrk)); "
        "compose (no usable Docker engine (none answers, or compose v2 is missing))"
    )

    status, lines = summary(report, ci=True)
    assert status == 1 and lines[-1].startswith("FAILED: CI=true and something was skipped"), lines


def test_only_a_run_without_skips_or_failures_says_all_passed(tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    assert run_pytest(report, "main-suite", "def test_runs():\n    assert True\n") == 0
    status, lines = summary(report, ci=True)
    assert status == 0 and lines == ["all suites passed, nothing skipped | ran: main-suite (1 test)"]

    assert run_pytest(report, "airflow-dags", "def test_breaks():\n    assert False\n") == 1
    assert run_pytest(report, "empty", "") == 5  # collected nothing: a failure too
    status, lines = summary(report, ci=False)
    assert status == 1
    assert lines[-1] == "FAILED: airflow-dags (exit 1), empty (no tests) | ran: main-suite (1 test)"
