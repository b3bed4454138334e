"""Secrets scan of the files git holds (tracked, or new and not ignored), with detect-secrets.

Every finding must match an entry of security/secrets-allowlist.txt (path glob, detector type,
hashed secret or *, reason); anything else fails. Line numbers are not part of the match, so
editing a file does not break the allow-list, but a new secret anywhere does.
Usage: .venv/bin/python security/secrets_check.py [repo root]
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path

ALLOWLIST = Path(__file__).with_name("secrets-allowlist.txt")


def load_allowlist(path: Path) -> list[tuple[str, str, str]]:
    entries = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split("|")]
        if len(fields) != 4 or not fields[3]:
            raise SystemExit(f"{path}:{number}: expected 'path glob | type | hash or * | reason'")
        entries.append((fields[0], fields[1], fields[2]))
    return entries


def scan(root: Path) -> list[dict[str, str | int]]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    files = [name for name in listed if name and (root / name).is_file()]
    detect = Path(sys.executable).with_name("detect-secrets")
    report = subprocess.run(
        [str(detect), "scan", "--no-verify", *files], cwd=root, capture_output=True, text=True, check=True
    )
    results = json.loads(report.stdout)["results"]
    return [
        {"path": path, "type": item["type"], "hash": item["hashed_secret"], "line": item["line_number"]}
        for path, items in results.items()
        for item in items
    ]


def allowed(finding: dict[str, str | int], entries: list[tuple[str, str, str]]) -> bool:
    return any(
        fnmatch.fnmatch(str(finding["path"]), glob) and finding["type"] == kind and expected in ("*", finding["hash"])
        for glob, kind, expected in entries
    )


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else ".").resolve()
    entries = load_allowlist(ALLOWLIST)
    findings = scan(root)
    unexpected = [finding for finding in findings if not allowed(finding, entries)]
    for finding in unexpected:
        print(f"  {finding['path']}:{finding['line']}: {finding['type']} (hash {finding['hash']})")
    if unexpected:
        print(f"secrets: {len(unexpected)} unexpected finding(s); remove the secret, or (if it is a demo value) "
              f"add it to {ALLOWLIST.relative_to(root)} with the reason")  # fmt: skip
        return 1
    print(f"secrets: no unexpected secret ({len(findings)} known demo/test values allowed by {ALLOWLIST.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
