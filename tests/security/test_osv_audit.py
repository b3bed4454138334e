"""The offline advisory check (security/osv_audit.py) on real records of the OSV snapshot.

The snapshot is the team's read-only copy (AUDIT_OSV_SNAPSHOT, default
../shared/advisories/pypa-osv.jsonl.gz beside the checkout); the lock files are written here.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(os.environ.get("AUDIT_OSV_SNAPSHOT") or ROOT.parent / "shared" / "advisories" / "pypa-osv.jsonl.gz")
SCRIPT = ROOT / "security" / "osv_audit.py"
DISKCACHE_ADVISORY = "PYSEC-2026-2447"


def _load_module():
    spec = importlib.util.spec_from_file_location("osv_audit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["osv_audit"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


osv_audit = _load_module()


@pytest.fixture(scope="module")
def snapshot():
    assert SNAPSHOT.is_file(), f"advisory snapshot missing: {SNAPSHOT} (set AUDIT_OSV_SNAPSHOT)"
    return osv_audit.load_snapshot(SNAPSHOT)


def run_cli(tmp_path: Path, lock_lines: list[str], exceptions: str | None = None) -> subprocess.CompletedProcess:
    lock = tmp_path / "requirements.txt"
    lock.write_text("\n".join(["# via uv pip compile", *lock_lines, ""]), encoding="utf-8")
    command = [sys.executable, str(SCRIPT), "--snapshot", str(SNAPSHOT)]
    if exceptions is not None:
        (tmp_path / "exceptions.txt").write_text(exceptions, encoding="utf-8")
        command += ["--exceptions", str(tmp_path / "exceptions.txt")]
    else:
        command += ["--exceptions", os.devnull]
    return subprocess.run([*command, str(lock)], capture_output=True, text=True, timeout=120)


def findings_for(snapshot, package: str, version: str) -> set[str]:
    return {f.advisory.id for f in osv_audit.audit({"lock": {package: version}}, snapshot)}


def test_snapshot_loads_and_names_its_date(snapshot):
    assert snapshot.records > 7000
    assert snapshot.newest_published == "2026-07-23"  # the date the snapshot's README gives


def test_affected_pin_fails_and_the_exception_file_makes_it_pass(tmp_path):
    lines = ["diskcache==5.6.3", "    # via dvc-data"]
    failing = run_cli(tmp_path, lines)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert f"VULN {tmp_path / 'requirements.txt'}: diskcache 5.6.3: {DISKCACHE_ADVISORY}" in failing.stdout
    assert "newest published 2026-07-23" in failing.stdout

    by_alias = "CVE-2025-69872 | diskcache | no fixed release | private cache directories\n"
    passing = run_cli(tmp_path, lines, exceptions=by_alias)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "accepted" in passing.stdout and "private cache directories" in passing.stdout

    other_package = "CVE-2025-69872 | dvc | no fixed release | private cache directories\n"
    assert run_cli(tmp_path, lines, exceptions=other_package).returncode == 1


def test_the_project_exception_file_is_well_formed_and_used():
    entries = osv_audit.load_exceptions(osv_audit.EXCEPTIONS)
    assert [(e.advisory_id, e.package) for e in entries] == [(DISKCACHE_ADVISORY, "diskcache")]
    assert "0700" in entries[0].mitigation


def test_malformed_exception_is_an_error(tmp_path):
    bad = tmp_path / "exceptions.txt"
    bad.write_text("PYSEC-2026-2447 | diskcache | reason without a mitigation\n", encoding="utf-8")
    with pytest.raises(ValueError, match="mitigation"):
        osv_audit.load_exceptions(bad)


def test_fixed_version_passes_and_the_versions_before_it_do_not(snapshot, tmp_path):
    # PyJWT's CVE-2022-29217 (algorithm confusion): fixed in 2.4.0.
    advisory = next(a for a in snapshot.by_package["pyjwt"] if "CVE-2022-29217" in a.aliases)
    assert "2.4.0" in advisory.fixed
    assert osv_audit.affects(advisory, "2.3.0")
    assert not osv_audit.affects(advisory, "2.4.0")
    assert not osv_audit.affects(advisory, "2.15.0")
    result = run_cli(tmp_path, ["PyJWT[crypto]==2.15.0 ; python_version >= '3'"])  # our pin: no advisory
    assert result.returncode == 0, result.stdout
    assert run_cli(tmp_path, ["pyjwt==2.3.0"]).returncode == 1


def test_last_affected_bounds_including_non_pep440_suffixes(snapshot):
    # diskcache: introduced 0, last_affected 5.6.3 (every release is affected, none fixed)
    assert DISKCACHE_ADVISORY in findings_for(snapshot, "diskcache", "5.6.3")
    assert DISKCACHE_ADVISORY in findings_for(snapshot, "diskcache", "5.4.0")
    assert DISKCACHE_ADVISORY not in findings_for(snapshot, "diskcache", "5.6.4")
    # PYSEC-2024-266: last_affected "2.10.0-NA" -> 2.10.0 affected, Airflow 3 not
    assert "PYSEC-2024-266" in findings_for(snapshot, "apache-airflow", "2.10.0")
    assert "PYSEC-2024-266" not in findings_for(snapshot, "apache-airflow", "3.3.2")


def test_ranges_follow_the_osv_evaluation_order():
    version = osv_audit.Version
    events = [{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"last_affected": "2.1"}]
    assert not osv_audit.in_ecosystem_range(version("0.9"), events)
    assert osv_audit.in_ecosystem_range(version("1.1.5"), events)
    assert not osv_audit.in_ecosystem_range(version("1.2"), events)
    assert osv_audit.in_ecosystem_range(version("2.1"), events)
    assert not osv_audit.in_ecosystem_range(version("2.1.1"), events)
    assert osv_audit.in_ecosystem_range(version("9"), [{"introduced": "0"}])
    assert osv_audit.in_ecosystem_range(version("1"), [{"introduced": "0"}, {"fixed": "not a version"}])


def test_withdrawn_records_are_skipped(tmp_path):
    import gzip
    import json

    records = [
        {"id": "TEST-1", "withdrawn": "2026-01-01T00:00:00Z", "published": "2025-01-01T00:00:00Z",
         "affected": [{"package": {"name": "Demo_Pkg", "ecosystem": "PyPI"}, "versions": ["1.0"]}]},
        {"id": "TEST-2", "published": "2025-02-01T00:00:00Z",
         "affected": [{"package": {"name": "demo-pkg", "ecosystem": "PyPI"}, "versions": ["1.0"]}]},
    ]  # fmt: skip
    path = tmp_path / "snapshot.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)
    small = osv_audit.load_snapshot(path)
    assert small.newest_published == "2025-02-01"
    assert {f.advisory.id for f in osv_audit.audit({"lock": {"demo-pkg": "1.0"}}, small)} == {"TEST-2"}
