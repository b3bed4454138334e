#!/usr/bin/env bash
# Dependency and code audit: every lock file against the known advisories, ruff's security rules
# (S), and a secrets scan of the files git holds. Exit 0 when clean, 1 on any finding.
#
# Advisories: pip-audit first (PyPI's JSON API, https://pypi.org/pypi/<name>/<version>/json).
# Where that service cannot be reached (a network that only proxies the package index: every
# package then comes back "not found on PyPI"), the same lock is checked offline by
# security/osv_audit.py against the OSV snapshot of the PyPA advisory database
# (AUDIT_OSV_SNAPSHOT, default ../shared/advisories/pypa-osv.jsonl.gz beside the checkout); it
# prints the snapshot's date. Neither reachable: the lock was not audited, and that fails.
# Accepted advisories: security/audit-exceptions.txt (ID | package | reason | mitigation).
set -uo pipefail
project_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$project_dir"
venv_bin="$project_dir/.venv/bin"
lock_files=(requirements/dev.txt requirements/runtime.txt requirements/monitoring.txt requirements/airflow.txt requirements/postgres.txt requirements/airflow-extras.txt requirements/s3.txt)
snapshot="${AUDIT_OSV_SNAPSHOT:-$project_dir/../shared/advisories/pypa-osv.jsonl.gz}"
offline_locks=()
failed=()

ignore_args=()
while IFS='|' read -r vuln_id _rest; do
  vuln_id="$(echo "$vuln_id" | xargs)"
  [ -n "$vuln_id" ] && ignore_args+=(--ignore-vuln "$vuln_id")
done < <(grep -v '^\s*#' security/audit-exceptions.txt | grep -v '^\s*$')

service_unreachable=0
for lock in "${lock_files[@]}"; do
  if [ "$service_unreachable" = 1 ]; then offline_locks+=("$lock"); continue; fi
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
    echo "pip-audit could not reach its vulnerability service (PyPI's per-version JSON API): $lock goes to the offline check, and so do the other locks"
    offline_locks+=("$lock")
    service_unreachable=1
  elif [ $rc -ne 0 ]; then
    failed+=("pip-audit $lock")
  fi
done

if [ ${#offline_locks[@]} -gt 0 ]; then
  echo "==> offline advisories (security/osv_audit.py): ${offline_locks[*]}"
  if [ -f "$snapshot" ]; then
    "$venv_bin/python" security/osv_audit.py --snapshot "$snapshot" "${offline_locks[@]}" || failed+=("offline advisories")
  else
    echo "!! no advisory snapshot at $snapshot (set AUDIT_OSV_SNAPSHOT): ${offline_locks[*]} NOT audited"
    failed+=("advisories unreachable, no snapshot")
  fi
fi

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
