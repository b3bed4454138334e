#!/usr/bin/env bash
# Dependency and code audit: pip-audit on every lock file, ruff's security rules (S), and a
# secrets scan of the files git holds. Exit 0 when clean, 1 on any finding.
#
# pip-audit asks PyPI's JSON API for each pinned version's advisories (https://pypi.org/pypi/
# <name>/<version>/json). Where that service cannot be reached (e.g. a network that only proxies
# the package index: every package then comes back "not found on PyPI"), nothing was audited:
# this script says so loudly and, unless AUDIT_REQUIRE_ADVISORIES=1, does not fail the run for it.
# Accepted vulnerabilities: security/audit-exceptions.txt (ID | package | lock file | reason).
set -uo pipefail
project_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$project_dir"
venv_bin="$project_dir/.venv/bin"
lock_files=(requirements.txt airflow/requirements.txt)
failed=()

ignore_args=()
while IFS='|' read -r vuln_id _rest; do
  vuln_id="$(echo "$vuln_id" | xargs)"
  [ -n "$vuln_id" ] && ignore_args+=(--ignore-vuln "$vuln_id")
done < <(grep -v '^\s*#' security/audit-exceptions.txt | grep -v '^\s*$')

for lock in "${lock_files[@]}"; do
  echo "==> pip-audit $lock"
  report="$(mktemp)"
  "$venv_bin/pip-audit" -r "$lock" --no-deps --disable-pip --progress-spinner off -f json -o "$report" \
    "${ignore_args[@]}" 2> >(grep -v "encouraged to fully hash\|pip-tools.readthedocs\|No known vulnerabilities found" >&2)
  rc=$?
  summary="$("$venv_bin/python" - "$report" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
deps = data.get("dependencies", [])
vulns = [(d["name"], d["version"], v["id"], ",".join(v.get("fix_versions") or []) or "no fix")
         for d in deps for v in d.get("vulns", [])]
skipped = [d for d in deps if "skip_reason" in d]
for name, version, vid, fix in vulns:
    print(f"VULN {name} {version}: {vid} (fixed in: {fix})")
if deps and len(skipped) == len(deps):
    print("UNREACHABLE")
print(f"SUMMARY {len(deps)} packages, {len(deps) - len(skipped)} audited, {len(vulns)} known vulnerabilities")
PY
)"
  rm -f "$report"
  echo "$summary" | grep -v '^UNREACHABLE$'
  if echo "$summary" | grep -q '^UNREACHABLE$'; then
    echo "!! pip-audit could not reach its vulnerability service (PyPI's per-version JSON API): $lock was NOT audited"
    [ "${AUDIT_REQUIRE_ADVISORIES:-0}" = 1 ] && failed+=("pip-audit $lock (service unreachable)")
  elif [ $rc -ne 0 ]; then
    failed+=("pip-audit $lock")
  fi
done

echo "==> ruff security rules (S, with the ignores pyproject.toml justifies)"
if ! grep -Eq '^select = \[.*"S"' pyproject.toml; then
  echo "!! pyproject.toml no longer selects ruff's S (flake8-bandit) rules"
  failed+=("ruff S not selected")
fi
"$venv_bin/ruff" check --no-cache --quiet . && echo "ruff: clean (S rules included)" || failed+=("ruff S")

echo "==> secrets scan (detect-secrets)"
"$venv_bin/python" security/secrets_check.py "$project_dir" || failed+=("secrets")

if [ ${#failed[@]} -gt 0 ]; then
  echo "AUDIT FAILED: ${failed[*]}"
  exit 1
fi
echo "audit passed"
