#!/usr/bin/env bash
# `make scale-test`: the scale-out stack (docker-compose.yml + docker-compose.scale.yml) built,
# started and checked end to end:
#   1. a Docker engine (as compose_test.sh: none and CI=true -> installed and started; none
#      outside CI -> SKIPPED, exit 0); the base image (BASE_IMAGE, default accidents-base:local);
#   2. docker compose build (same Dockerfiles as the compose suite: its layers are reused), then
#      up -d --wait on free loopback ports with throw-away secrets (git-ignored env file);
#   3. tests/scale (pytest in .venv) through the published ports and `docker compose` (to stop and
#      start a replica); DVC's private dirs in both workers (security/dvc_private_dirs.py); then
#      no service's log may contain the S3 secret key;
#   4. always: docker compose down -v (and the engine stopped if this script started it).
# Exit status: 0 passed (or skipped outside CI), 1 failed. Timings are printed at the end.
#   SCALE_TEST_PROJECT (accidents-scale)  SCALE_TEST_KEEP=1 (leave the stack up, for debugging)
#   BAAC_DATA_DIR (default ../shared/data/baac beside the checkout)
set -uo pipefail
project_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$project_dir"
work="$project_dir/state/scale-test"
mkdir -p "$work"
compose_project="${SCALE_TEST_PROJECT:-accidents-scale}"
base_image="${BASE_IMAGE:-accidents-base:local}"
env_file="$work/scale.env"
engine_pid_file="$project_dir/state/docker/dockerd.pid"
compose_cmd=(docker compose --project-directory "$project_dir" -f "$project_dir/docker-compose.yml"
  -f "$project_dir/docker-compose.scale.yml" --env-file "$env_file" -p "$compose_project")
# only the env file's variables (a developer's .env or shell exports must not leak in)
dc() { env -i PATH="$PATH" HOME="${HOME:-/root}" ${DOCKER_HOST:+DOCKER_HOST="$DOCKER_HOST"} "${compose_cmd[@]}" "$@"; }

suite=scale-test
keep_var=SCALE_TEST_KEEP
# shellcheck source=scripts/docker/stack_test_lib.sh
source "$project_dir/scripts/docker/stack_test_lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------- 1. engine, base image
engine_and_base_image scale-test

# --------------------------------------------------------------------------------- env file
find_baac
("$project_dir/.venv/bin/python" "$project_dir/scripts/docker/write_stack_env.py" "$env_file" --by scale_test.sh \
  --base-image "$base_image" --baac "$baac" --tag scale \
  --ports LB_HOST_PORT,API_HOST_PORT,API2_HOST_PORT,MLFLOW_HOST_PORT,AIRFLOW_HOST_PORT,S3_HOST_PORT --s3 --set MODEL_POLL_SECONDS=10
) || fail "could not write $env_file"
get() { grep -E "^$1=" "$env_file" | cut -d= -f2-; }

# ----------------------------------------------------------------------------------- 2. build
dc config --quiet || fail "docker-compose.yml + docker-compose.scale.yml do not validate"
t=$SECONDS
say "building images (base $base_image; log $work/build.log)"
if ! dc build >"$work/build.log" 2>&1; then
  tail -n 60 "$work/build.log"
  fail "docker compose build failed (log: $work/build.log)"
fi
lap "build images" $t

t=$SECONDS
stack_created=1
say "docker compose up -d --wait (load balancer http://127.0.0.1:$(get LB_HOST_PORT))"
if ! dc up -d --wait --wait-timeout 900 >"$work/up.log" 2>&1; then
  report_unhealthy
fi
lap "up --wait (healthy)" $t
dc ps -a --format 'table {{.Service}}\t{{.Status}}'

# ----------------------------------------------------------------------------------- 3. checks
t=$SECONDS
url() { echo "http://127.0.0.1:$(get "$1")"; }
SCALE_URLS="lb=$(url LB_HOST_PORT),api1=$(url API_HOST_PORT),api2=$(url API2_HOST_PORT),airflow=$(url AIRFLOW_HOST_PORT),mlflow=$(url MLFLOW_HOST_PORT),s3=$(url S3_HOST_PORT)" \
SCALE_COMPOSE="${compose_cmd[*]}" \
SCALE_ADMIN_PASSWORD="$(get ADMIN_PASSWORD)" SCALE_AIRFLOW_PASSWORD="$(get AIRFLOW_ADMIN_PASSWORD)" \
MLFLOW_TRACKING_USERNAME="$(get MLFLOW_AUTH_ADMIN_USERNAME)" MLFLOW_TRACKING_PASSWORD="$(get MLFLOW_AUTH_ADMIN_PASSWORD)" \
  "$project_dir/.venv/bin/pytest" "$project_dir/tests/scale" -p no:cacheprovider -v -rxP
rc=$?
lap "checks (pytest)" $t

# The diskcache advisory's mitigation in the containers that ran DVC stages (the workers' own /app)
if [ $rc = 0 ]; then
  for service in airflow-worker-1 airflow-worker-2; do
    if dc exec -T "$service" /app/.venv/bin/python /app/security/dvc_private_dirs.py /app >"$work/dvc-dirs-$service.log" 2>&1; then
      say "$service: $(tail -n1 "$work/dvc-dirs-$service.log")"
    else
      cat "$work/dvc-dirs-$service.log"
      say "DVC's dirs are not private in $service"
      rc=1
    fi
  done
fi

if [ $rc = 0 ] && [ "${SCALE_BENCH:-}" = 1 ]; then
  t=$SECONDS
  say "SCALE_BENCH=1: throughput through the load balancer, two replicas vs one (bench/scale_lb.py)"
  "$project_dir/.venv/bin/python" -m bench.scale_lb --env-file "$env_file" --project "$compose_project" || rc=1
  lap "bench (scale_lb)" $t
fi

dc logs --no-color >"$work/logs.txt" 2>&1
if grep -qF "$(get S3_SECRET_ACCESS_KEY)" "$work/logs.txt"; then
  say "the S3 secret key appears in the services' logs"
  rc=1
else
  say "no service log contains the S3 secret key ($(wc -l <"$work/logs.txt") log lines checked)"
fi
if [ $rc != 0 ]; then
  tail -n 250 "$work/logs.txt"
  fail "end-to-end checks failed (service logs: $work/logs.txt)"
fi
say "PASSED"
exit 0
