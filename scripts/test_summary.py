"""The last lines of `make test`: what ran, what was skipped and why.

"all suites passed" used to be printed whenever no suite failed, even when the container suites
had said SKIPPED (no Docker engine), the load test had skipped (no wrk) or the immutable-file tests
had skipped (no CAP_LINUX_IMMUTABLE): a green line that hid untested parts. scripts/run_tests.sh
records one line per suite in `results.tsv` (name, exit status) in a report folder, each pytest
suite's JUnit XML as `<name>.xml`, and a skipped container suite's reason as `<name>.skipped`;
this reads them back. Outside CI a skip is reported, not failed; with CI=true any skip fails the
run (CI installs everything, so a skip there means a test did not run).

    python scripts/test_summary.py REPORT_DIR   # prints the summary; exit 1 on a failure (or a skip in CI)
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

NO_TESTS = 5  # pytest's exit status when it collected nothing: a failure here


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass
class Suite:
    name: str
    status: int
    tests: int | None = None  # pytest suites: the test cases their JUnit XML holds
    skipped_tests: list[tuple[str, str]] = field(default_factory=list)  # (test id, reason)
    skipped_reason: str | None = None  # the whole suite skipped (container suites without an engine)

    @property
    def failure(self) -> str | None:
        if self.status == NO_TESTS:
            return f"{self.name} (no tests)"
        return None if self.status == 0 else f"{self.name} (exit {self.status})"

    def ran(self) -> str:
        if self.tests is None:
            return self.name
        skipped = f", {len(self.skipped_tests)} skipped" if self.skipped_tests else ""
        return f"{self.name} ({plural(self.tests, 'test')}{skipped})"

    def skips(self) -> list[str]:
        """One entry per distinct reason: `suite: N tests (reason)` or `suite (reason)`."""
        if self.skipped_reason is not None:
            return [f"{self.name} ({self.skipped_reason})"]
        reasons = Counter(reason for _, reason in self.skipped_tests)
        return [f"{self.name}: {plural(count, 'test')} ({reason})" for reason, count in reasons.items()]


def junit_skips(path: Path) -> tuple[int, list[tuple[str, str]]]:
    """The number of test cases and the skipped ones (id, reason) of a pytest JUnit XML file."""
    cases = ElementTree.parse(path).getroot().iter("testcase")  # noqa: S314 - our own pytest run wrote it
    total, skipped = 0, []
    for case in cases:
        total += 1
        skip = case.find("skipped")
        if skip is not None:
            test = f"{case.get('classname', '')}::{case.get('name', '')}"
            skipped.append((test, (skip.get("message") or "no reason given").strip()))
    return total, skipped


def read_suites(report_dir: Path) -> list[Suite]:
    suites = []
    for line in (report_dir / "results.tsv").read_text(encoding="utf-8").splitlines():
        name, status = line.split("\t")
        suite = Suite(name, int(status))
        junit, reason = report_dir / f"{name}.xml", report_dir / f"{name}.skipped"
        if junit.is_file():
            suite.tests, suite.skipped_tests = junit_skips(junit)
        if reason.is_file():
            suite.skipped_reason = reason.read_text(encoding="utf-8").strip() or "no reason given"
        suites.append(suite)
    return suites


def summarize(suites: list[Suite], ci: bool) -> tuple[list[str], int]:
    """The lines to print (the skipped tests one by one, then the final line) and the exit status."""
    lines = [f"skipped: {suite.name}: {test}: {reason}" for suite in suites for test, reason in suite.skipped_tests]
    failures = [failure for suite in suites if (failure := suite.failure)]
    ran = [suite.ran() for suite in suites if suite.skipped_reason is None and suite.failure is None]
    skips = [skip for suite in suites for skip in suite.skips()]
    what = f"ran: {', '.join(ran) or 'nothing'}" + (f"; skipped: {'; '.join(skips)}" if skips else "")
    if failures:
        lines.append(f"FAILED: {', '.join(failures)} | {what}")
    elif skips and ci:
        lines.append(f"FAILED: CI=true and something was skipped (every tool is installed in CI) | {what}")
    elif skips:
        lines.append(f"passed, but NOT everything ran | {what}")
    else:
        lines.append(f"all suites passed, nothing skipped | {what}")
    return lines, 1 if failures or (skips and ci) else 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/test_summary.py REPORT_DIR", file=sys.stderr)
        return 2
    lines, status = summarize(read_suites(Path(argv[0])), ci=os.environ.get("CI") == "true")
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
