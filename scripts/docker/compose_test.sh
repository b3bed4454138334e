#!/usr/bin/env bash
# `make compose-test`: the docker compose stack, built from scratch and checked end to end.
#
#   1. a Docker engine: the running one; none and CI=true -> install docker.io + compose v2 and
#      start dockerd (scripts/docker/ensure_engine.sh); none outside CI -> say SKIPPED, exit 0
#      (ENGINE_INSTALL=1 installs/starts one outside CI too, as root);
#   2. the base image (BASE_IMAGE, default accidents-base:local: built with debootstrap when
#      missing; BASE_IMAGE=python:3.11-slim where a registry is reachable);
#   3. docker compose build; the API in production mode with the demo secrets of .env.example
#      must refuse to start; then up -d --wait in production mode (API_ENVIRONMENT=production,
#      free loopback ports, throw-away secrets generated into a git-ignored env file, the
#      host's BAAC mirror mounted read-only);
#   4. tests/compose (pytest in .venv) against the published ports, then inside the containers:
#      `dvc status`, and DVC's private dirs (security/dvc_private_dirs.py, the mitigation of
#      the diskcache advisory) in the api and airflow-scheduler containers;
#   5. always: docker compose down -v, and stop the engine if this script started it (by PID).
# Exit status: 0 passed (or skipped outside CI), 1 failed. Timings are printed at the end.
#   COMPOSE_TEST_PROJECT (accidents-e2e)  COMPOSE_TEST_KEEP=1 (leave the stack up, for debugging)
#   BAAC_DATA_DIR (default ../shared/data/baac beside the checkout)
set -uo pipefail
project_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$project_dir"
work="$project_dir/state/compose-test"
mkdir -p "$work"
compose_project="${COMPOSE_TEST_PROJECT:-accidents-e2e}"
base_image="${BASE_IMAGE:-accidents-base:local}"
env_file="$work/compose.env"
engine_pid_file="$project_dir/state/docker/dockerd.pid"
# docker compose with only the variables of an env file (a developer's own .env or shell exports
# must not leak into the test stack; shell variables win over --env-file in compose).
dc_with() {  # env file, then compose arguments
  local file="$1"; shift
  env -i PATH="$PATH" HOME="${HOME:-/root}" ${DOCKER_HOST:+DOCKER_HOST="$DOCKER_HOST"} \
    docker compose --project-directory "$project_dir" -f "$project_dir/docker-compose.yml" \
    --env-file "$file" -p "$compose_project" "$@"
}
dc() { dc_with "$env_file" "$@"; }

suite=compose-test
keep_var=COMPOSE_TEST_KEEP
# shellcheck source=scripts/docker/stack_test_lib.sh
source "$project_dir/scripts/docker/stack_test_lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

# ----------------------------------------------------------------- 1-2. engine, base image
engine_and_base_image compose-test

# --------------------------------------------------------------------------------- env file
find_baac
("$project_dir/.venv/bin/python" "$project_dir/scripts/docker/write_stack_env.py" "$env_file" --by compose_test.sh \
  --base-image "$base_image" --baac "$baac" --tag e2e \
  --ports API_HOST_PORT,MLFLOW_HOST_PORT,AIRFLOW_HOST_PORT,PROMETHEUS_HOST_PORT,ALERTMANAGER_HOST_PORT
) || fail "could not write $env_file"
get() { grep -E "^$1=" "$env_file" | cut -d= -f2-; }
api_url="http://127.0.0.1:$(get API_HOST_PORT)"
mlflow_url="http://127.0.0.1:$(get MLFLOW_HOST_PORT)"
airflow_url="http://127.0.0.1:$(get AIRFLOW_HOST_PORT)"
prometheus_url="http://127.0.0.1:$(get PROMETHEUS_HOST_PORT)"

# ----------------------------------------------------------------------------------- 3. build
dc config --quiet || fail "docker-compose.yml does not validate"
t=$SECONDS
say "building images (base $base_image; log $work/build.log)"
if ! dc build >"$work/build.log" 2>&1; then
  tail -n 60 "$work/build.log"
  fail "docker compose build failed (log: $work/build.log)"
fi
lap "build images" $t
docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "accidents-.*:(e2e|local)" || true

# ------------------------------------------------------- production mode refuses demo secrets
# The same env file with the demo values of .env.example's compose section (the last example
# line of each: JWT_SECRET=change-me, ADMIN_PASSWORD=admin123): the API must exit at start with
# a message naming each problem, and no traceback.
t=$SECONDS
stack_created=1
demo_env="$work/compose-demo.env"
(umask 077 && grep -vE '^(JWT_SECRET|ADMIN_PASSWORD)=' "$env_file" >"$demo_env" \
  && for name in JWT_SECRET ADMIN_PASSWORD; do
       grep -E "^# $name=.+" "$project_dir/.env.example" | tail -n1 | sed 's/^# //'
     done >>"$demo_env")
[ "$(grep -cE '^(JWT_SECRET|ADMIN_PASSWORD)=.+' "$demo_env")" = 2 ] || fail ".env.example lacks the compose demo secrets"
refusal="$compose_project-demo-refusal"
refusal_rc=running
if dc_with "$demo_env" run -d --no-deps --name "$refusal" api >"$work/demo-refusal.log" 2>&1; then
  refusal_rc="$(timeout 180 docker wait "$refusal" || echo running)"
  docker logs "$refusal" >>"$work/demo-refusal.log" 2>&1
fi
docker rm -f "$refusal" >/dev/null 2>&1
if [ "$refusal_rc" = 0 ] || [ "$refusal_rc" = running ] \
  || ! grep -q "refusing to start with ENVIRONMENT=production" "$work/demo-refusal.log" \
  || ! grep -A3 "refusing to start" "$work/demo-refusal.log" | grep -q "JWT_SECRET" \
  || ! grep -A3 "refusing to start" "$work/demo-refusal.log" | grep -q "ADMIN_PASSWORD" \
  || grep -q "Traceback" "$work/demo-refusal.log"; then
  cat "$work/demo-refusal.log"
  fail "API_ENVIRONMENT=production with the demo secrets did not refuse to start cleanly (exit $refusal_rc)"
fi
say "production mode with .env.example's demo secrets: the API refused to start (exit $refusal_rc):"
grep -A3 "refusing to start" "$work/demo-refusal.log" | sed 's/^/    /'
lap "demo secrets refused" $t

# -------------------------------------------------------------------------------------- up
t=$SECONDS
say "docker compose up -d --wait (API $api_url, MLflow $mlflow_url, Airflow $airflow_url)"
if ! dc up -d --wait --wait-timeout 900 >"$work/up.log" 2>&1; then
  report_unhealthy
fi
lap "up --wait (healthy)" $t
dc ps -a --format 'table {{.Service}}\t{{.Status}}'

# ----------------------------------------------------------------------------------- 4. checks
t=$SECONDS
say "end-to-end checks (tests/compose)"
COMPOSE_BASE_URLS="api=$api_url,mlflow=$mlflow_url,airflow=$airflow_url,prometheus=$prometheus_url" \
COMPOSE_ADMIN_USERNAME="$(get ADMIN_USERNAME)" COMPOSE_ADMIN_PASSWORD="$(get ADMIN_PASSWORD)" \
COMPOSE_AIRFLOW_USERNAME="$(get AIRFLOW_ADMIN_USERNAME)" COMPOSE_AIRFLOW_PASSWORD="$(get AIRFLOW_ADMIN_PASSWORD)" \
COMPOSE_API_ENVIRONMENT="$(get API_ENVIRONMENT)" \
MLFLOW_TRACKING_USERNAME="$(get MLFLOW_AUTH_ADMIN_USERNAME)" MLFLOW_TRACKING_PASSWORD="$(get MLFLOW_AUTH_ADMIN_PASSWORD)" \
  "$project_dir/.venv/bin/pytest" "$project_dir/tests/compose" -p no:cacheprovider -v
rc=$?
lap "checks (pytest)" $t

# Seed compatibility: the project and its DVC live at /app in the API image.
t=$SECONDS
if [ $rc = 0 ]; then
  if dc exec -T api bash -c "cd /app && dvc status" >"$work/dvc-status.log" 2>&1; then
    say "docker compose exec api bash -c 'cd /app && dvc status': ok"
  else
    cat "$work/dvc-status.log"
    say "dvc status inside the api container failed"
    rc=1
  fi
fi
lap "dvc status in api" $t

# The diskcache advisory's mitigation, in the containers that run DVC (after the trainer's and a
# DAG run's pipelines used them): site cache, cache and tmp owned by the service user, 0700.
t=$SECONDS
if [ $rc = 0 ]; then
  for service in api airflow-scheduler; do
    if dc exec -T "$service" /app/.venv/bin/python /app/security/dvc_private_dirs.py /app >"$work/dvc-dirs-$service.log" 2>&1; then
      say "$service: $(tail -n1 "$work/dvc-dirs-$service.log")"
    else
      cat "$work/dvc-dirs-$service.log"
      say "DVC's dirs are not private in $service"
      rc=1
    fi
  done
fi
lap "dvc private dirs" $t

# Secrets wider than needed (issue #23 item 10): Airflow's containers hold neither the API's JWT
# secret, nor its admin password variable, nor a URL of the users database or as its role (a
# database URL: `//api:<password>@` or `@host/api`; the API's own address http://api:8000 is fine).
t=$SECONDS
if [ $rc = 0 ]; then
  for service in airflow-scheduler airflow-api-server airflow-dag-processor; do
    dc exec -T "$service" env >"$work/env-$service.txt" 2>&1 || rc=1
    leaked="$( { grep -E '^(JWT_SECRET|ADMIN_PASSWORD|DATABASE_URL)=|//api:[^@/]*@|@[^/]*/api$' "$work/env-$service.txt"
                 grep -F -e "$(get API_DB_PASSWORD)" -e "$(get JWT_SECRET)" "$work/env-$service.txt"; } | cut -d= -f1 | sort -u)"
    if [ -n "$leaked" ]; then
      say "$service holds the API's secrets: $leaked"
      rc=1
    else
      say "$service: no JWT secret, admin password or users-database URL in its environment"
    fi
  done
fi
lap "airflow env" $t

# MLflow's store URIs and passwords reach it by environment: no process in its container shows
# one on its command line (what `ps` lists to every local user).
t=$SECONDS
if [ $rc = 0 ]; then
  dc exec -T mlflow /app/.venv/bin/python -c "import pathlib
for p in pathlib.Path('/proc').glob('[0-9]*/cmdline'):
    print(p.read_bytes().replace(b'\0', b' ').decode(errors='replace'))" >"$work/mlflow-cmdlines.txt" 2>&1 || rc=1
  if grep -qF -e "$(get MLFLOW_DB_PASSWORD)" -e "$(get MLFLOW_AUTH_ADMIN_PASSWORD)" -e postgresql "$work/mlflow-cmdlines.txt" \
     || ! grep -q "basic-auth" "$work/mlflow-cmdlines.txt"; then
    cat "$work/mlflow-cmdlines.txt"
    say "MLflow's command line shows a store URI or password (or runs without basic auth)"
    rc=1
  else
    say "mlflow: basic auth on, no store URI or password on any command line"
  fi
fi
lap "mlflow command line" $t

if [ $rc != 0 ]; then
  dc logs --no-color --tail 150 >"$work/logs.txt" 2>&1
  tail -n 250 "$work/logs.txt"
  fail "end-to-end checks failed (pytest exit $rc; service logs: $work/logs.txt)"
fi
say "PASSED"
exit 0
