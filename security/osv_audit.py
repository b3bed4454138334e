"""Offline dependency audit: pinned versions of lock files against an OSV advisory snapshot.

scripts/audit.sh uses it when pip-audit cannot reach its advisory service. The snapshot is the
PyPA advisory database in OSV format, one JSON record a line, gzip-compressed
(../shared/advisories/pypa-osv.jsonl.gz; README beside it). A pin is affected when its version
is in a record's explicit `versions` list or inside one of its ECOSYSTEM ranges
(`introduced` / `fixed` / `last_affected` events, evaluated as the OSV schema says, with PEP 440
ordering from `packaging`). GIT ranges are ignored: they name commits, not releases.

Accepted advisories: security/audit-exceptions.txt, one per line,
`ADVISORY-ID | package | reason | mitigation`; the ID may be the record's id or any alias.
An unlisted affected pin fails the audit; a listed one is reported as accepted.

Usage: python security/osv_audit.py --snapshot FILE [--exceptions FILE] LOCK [LOCK ...]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

EXCEPTIONS = Path(__file__).with_name("audit-exceptions.txt")
LEADING_RELEASE = re.compile(r"^\d+(?:\.\d+)*")
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;#\\]+)")


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    summary: str
    fixed: tuple[str, ...]  # releases that fix it, empty when none exists
    affected: tuple[dict, ...]  # the record's affected[] entries for one package

    @property
    def names(self) -> set[str]:
        return {self.id, *self.aliases}


@dataclass(frozen=True)
class Finding:
    lock: str
    package: str
    version: str
    advisory: Advisory


@dataclass(frozen=True)
class Snapshot:
    by_package: dict[str, list[Advisory]]
    records: int
    newest_published: str  # the snapshot's date: its newest advisory


@dataclass(frozen=True)
class AcceptedAdvisory:
    advisory_id: str
    package: str
    reason: str
    mitigation: str


def parse_lock(path: Path) -> dict[str, str]:
    """`name==version` pins of a pip/uv lock file, by canonical name (comments, hashes skipped)."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def load_snapshot(path: Path) -> Snapshot:
    by_package: dict[str, list[Advisory]] = defaultdict(list)
    records = 0
    newest = ""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            records += 1
            newest = max(newest, record.get("published", ""))
            if record.get("withdrawn"):
                continue
            per_package: dict[str, list[dict]] = defaultdict(list)
            for entry in record.get("affected", []):
                package = entry.get("package", {})
                if package.get("ecosystem") == "PyPI" and package.get("name"):
                    per_package[canonicalize_name(package["name"])].append(entry)
            for name, entries in per_package.items():
                fixed = tuple(
                    event["fixed"]
                    for entry in entries
                    for span in entry.get("ranges", [])
                    if span.get("type") == "ECOSYSTEM"
                    for event in span.get("events", [])
                    if "fixed" in event
                )
                by_package[name].append(
                    Advisory(
                        id=record["id"],
                        aliases=tuple(record.get("aliases", [])),
                        summary=record.get("summary") or record.get("details", "").split("\n")[0][:120],
                        fixed=fixed,
                        affected=tuple(entries),
                    )
                )
    return Snapshot(dict(by_package), records, newest[:10])


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _bound(text: str) -> Version | None:
    """A range event's version; records sometimes carry non-PEP 440 suffixes ("2.10.0-NA"):
    then the leading release number is the bound."""
    if text == "0":
        return Version("0")
    parsed = _version(text)
    if parsed is None and (release := LEADING_RELEASE.match(text)):
        parsed = _version(release.group(0))
    return parsed


def in_ecosystem_range(version: Version, events: list[dict]) -> bool:
    """OSV's evaluation of one ECOSYSTEM range: events sorted by version, last matching one wins."""
    keyed = []
    for event in events:
        kind, value = next(iter(event.items()))
        if kind not in ("introduced", "fixed", "last_affected"):
            continue  # `limit` only bounds GIT ranges
        bound = _bound(value)
        if bound is None:
            return True  # a bound we cannot read: report it rather than guess it away
        keyed.append((bound, kind))
    affected = False
    for bound, kind in sorted(keyed, key=lambda item: item[0]):
        if kind == "introduced" and version >= bound:
            affected = True
        elif (kind == "fixed" and version >= bound) or (kind == "last_affected" and version > bound):
            affected = False
    return affected


def affects(advisory: Advisory, version_text: str) -> bool:
    version = _version(version_text)
    for entry in advisory.affected:
        listed = entry.get("versions", [])
        if version_text in listed or (version is not None and version in {_version(v) for v in listed} - {None}):
            return True
        if version is None:
            continue
        for span in entry.get("ranges", []):
            if span.get("type") == "ECOSYSTEM" and in_ecosystem_range(version, span.get("events", [])):
                return True
    return False


def audit(locks: dict[str, dict[str, str]], snapshot: Snapshot) -> list[Finding]:
    return [
        Finding(lock, package, version, advisory)
        for lock, pins in locks.items()
        for package, version in sorted(pins.items())
        for advisory in snapshot.by_package.get(package, [])
        if affects(advisory, version)
    ]


def load_exceptions(path: Path) -> list[AcceptedAdvisory]:
    entries = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split("|")]
        if len(fields) != 4 or not all(fields):
            raise ValueError(f"{path}:{number}: expected 'ADVISORY-ID | package | reason | mitigation', all non-empty")
        entries.append(AcceptedAdvisory(fields[0], canonicalize_name(fields[1]), fields[2], fields[3]))
    return entries


def exception_for(finding: Finding, exceptions: list[AcceptedAdvisory]) -> AcceptedAdvisory | None:
    return next(
        (
            entry
            for entry in exceptions
            if entry.package == finding.package and entry.advisory_id in finding.advisory.names
        ),
        None,
    )


def report(findings: list[Finding], exceptions: list[AcceptedAdvisory], out=sys.stdout) -> int:
    """Prints every finding; returns how many are not covered by an exception."""
    unlisted = 0
    used: set[AcceptedAdvisory] = set()
    for finding in findings:
        advisory = finding.advisory
        aliases = f" ({', '.join(advisory.aliases)})" if advisory.aliases else ""
        fix = ", ".join(advisory.fixed) or "no fixed release"
        entry = exception_for(finding, exceptions)
        if entry is None:
            unlisted += 1
            print(f"VULN {finding.lock}: {finding.package} {finding.version}: {advisory.id}{aliases}: "
                  f"{advisory.summary} [fixed in: {fix}]", file=out)  # fmt: skip
        else:
            used.add(entry)
            print(f"accepted {finding.lock}: {finding.package} {finding.version}: {advisory.id}{aliases} "
                  f"[fixed in: {fix}]; mitigation: {entry.mitigation}", file=out)  # fmt: skip
    for entry in exceptions:
        if entry not in used:
            print(f"note: exception {entry.advisory_id} ({entry.package}) matches no pinned version any more: "
                  "remove it from the exceptions file", file=out)  # fmt: skip
    return unlisted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshot", type=Path, required=True, help="OSV records, .jsonl.gz")
    parser.add_argument("--exceptions", type=Path, default=EXCEPTIONS)
    parser.add_argument("locks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    snapshot = load_snapshot(args.snapshot)
    print(f"offline advisories: {args.snapshot} ({snapshot.records} records, newest published "
          f"{snapshot.newest_published}: advisories after that date are NOT known to this audit)")  # fmt: skip
    locks = {str(lock): parse_lock(lock) for lock in args.locks}
    for lock, pins in locks.items():
        print(f"  {lock}: {len(pins)} pinned packages checked")
    unlisted = report(audit(locks, snapshot), load_exceptions(args.exceptions))
    if unlisted:
        print(f"{unlisted} affected pin(s) not in {args.exceptions}: upgrade, or record the reason and mitigation")
        return 1
    print("offline audit: no unlisted advisory affects a pinned version")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
