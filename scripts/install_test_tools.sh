#!/usr/bin/env bash
# What `make test` needs beyond `make run`, installed from Debian's packages when missing (as root;
# `make setup-test-tools`, and .ci/run before `make test`): wrk drives the load tests
# (tests/security); prometheus: its promtool checks the alert rules and a real server scrapes a real
# API (tests/prometheus); prometheus-alertmanager: amtool checks its config and a real one delivers the
# alerts to the API (tests/prometheus, tests/e2e/test_alert_delivery.py); chromium: the dashboard's headless browser test (tests/dashboard); the
# PostgreSQL server binaries: throw-away clusters for the API and security suites on PostgreSQL
# (tests/support/postgres.py; the package's own "main" cluster is not created). Docker is not
# installed here: the container suites install and start an engine themselves with CI=true or
# ENGINE_INSTALL=1 (scripts/docker/ensure_engine.sh), and say SKIPPED without one otherwise.
set -euo pipefail
# .venv-nannyml: NannyML itself, test-only, the reference our CBPE is checked against
# (tests/monitoring/test_cbpe_matches_nannyml.py fails under CI=true without it); after the tools below
trap '[ $? -ne 0 ] || make --no-print-directory -C "$(dirname "$0")/.." setup-nannyml' EXIT
missing=()
command -v make >/dev/null || missing+=(make)
command -v wrk >/dev/null || missing+=(wrk)
command -v promtool >/dev/null || missing+=(prometheus)
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null || missing+=(chromium)
# haproxy: the scale-out load balancer's retry rules on a real HAProxy (tests/scale/test_haproxy_retries.py)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if ! command -v initdb >/dev/null && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_test_tools: make, wrk, promtool, amtool, chromium, haproxy and initdb are all there"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install_test_tools: missing ${missing[*]}; install them as root, e.g. on Debian/Ubuntu:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  echo "  (macOS: brew install wrk prometheus postgresql@16 and Chromium)" >&2
  exit 1
fi
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
  mkdir -p /etc/postgresql-common
  [ -e /etc/postgresql-common/createcluster.conf ] || echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold "${missing[@]}"
