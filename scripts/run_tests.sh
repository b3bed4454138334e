#!/usr/bin/env bash
# `make test`: lint, then every pytest suite in the venv it belongs to. A suite that collects
# no test (pytest exit 5) fails the run: a green result must mean tests really ran. The last
# line (scripts/test_summary.py) says what ran and what was skipped and why: pytest's skips from
# each suite's JUnit XML, a container suite's SKIPPED (no Docker engine) from its reason file.
# With CI=true any skip fails the run.
# Extra arguments go to the main suite (e.g. make test ARGS="-k predict").
set -uo pipefail
project_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$project_dir"
if [ -z "${BAAC_DATA_DIR:-}" ] && [ -d "$project_dir/../shared/data/baac" ]; then
  BAAC_DATA_DIR="$(cd "$project_dir/../shared/data/baac" && pwd)"
  export BAAC_DATA_DIR
fi
report_dir="$(mktemp -d)"
trap 'rm -rf "$report_dir"' EXIT

run_suite() {  # name, then the command
  local name="$1"; shift
  echo "==> $name: $*"
  "$@"
  local rc=$?
  [ $rc = 5 ] && echo "!! $name collected no tests: that is a failure"
  printf '%s\t%s\n' "$name" "$rc" >>"$report_dir/results.tsv"
}

run_pytest() {  # name, the pytest binary, its arguments: skips listed (-rs) and kept in a JUnit XML
  local name="$1" pytest="$2"; shift 2
  run_suite "$name" "$pytest" -rs --junitxml="$report_dir/$name.xml" "$@"
}

run_containers() {  # name, the script: without an engine it writes why to SKIP_REASON_FILE
  SKIP_REASON_FILE="$report_dir/$1.skipped" run_suite "$1" bash "$2"
}

run_suite lint .venv/bin/ruff check .
run_suite format .venv/bin/ruff format --check .
run_suite audit bash scripts/audit.sh
# Prometheus' alert rules: valid, and their unit tests (series in, alerts out) pass (promtool,
# Debian package `prometheus`; .ci/run installs it).
# The documentation site builds with no warning: a broken link, a missing page or a page left out
# of the nav fails (mkdocs.yml's validation settings, --strict).
docs_site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 run_suite docs .venv-docs/bin/mkdocs build --strict --quiet --site-dir "$docs_site"
rm -rf "$docs_site"
run_suite prometheus-rules promtool check rules deploy/prometheus/alerts.yml
run_suite prometheus-rule-tests promtool test rules deploy/prometheus/alerts_test.yml
run_pytest main-suite .venv/bin/pytest tests --ignore=tests/airflow --ignore=tests/compose --ignore=tests/scale -p no:cacheprovider "$@"
run_pytest airflow-dags .venv-airflow/bin/pytest tests/airflow -p no:cacheprovider
# Containers: built and checked end to end when an engine is available (in CI one is installed;
# elsewhere it says SKIPPED clearly when there is none).
run_containers compose scripts/docker/compose_test.sh
# The scale-out stack (Celery workers, S3 store, API replicas behind HAProxy): same rule, reusing
# the compose suite's image layers.
run_containers scale scripts/docker/scale_test.sh

echo "==> summary"
.venv/bin/python scripts/test_summary.py "$report_dir"
