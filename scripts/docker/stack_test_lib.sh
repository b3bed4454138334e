# Shared by compose_test.sh and scale_test.sh (sourced, not run): messages and timings, the
# cleanup trap (down -v, and the engine stopped if this run started it), the Docker engine and
# base image, and the BAAC mirror. The caller sets `suite` (its name in messages), `keep_var` (the
# name of its KEEP variable), project_dir, work, compose_project, base_image, engine_pid_file, and
# defines dc (docker compose on its files and env file) before it sources this.
t_start=$SECONDS
timings=()
engine_started=0
stack_created=0

say() { echo "$suite: $*"; }
fail() { say "FAILED: $*"; exit 1; }
lap() {  # name, start second
  timings+=("$(printf '%-24s %4d s' "$1" $((SECONDS - $2)))")
}
print_timings() {
  echo "$suite timings:"
  printf '  %s\n' "${timings[@]}"
  printf '  %-24s %4d s\n' "total" $((SECONDS - t_start))
}
keep_stack() { [ "${!keep_var:-}" = 1 ]; }

cleanup() {
  local rc=$?
  if [ "$stack_created" = 1 ]; then
    if keep_stack; then
      say "$keep_var=1: stack $compose_project left up (docker compose -p $compose_project ... down -v to remove it)"
    else
      local t=$SECONDS
      dc down -v --remove-orphans --timeout 20 >"$work/down.log" 2>&1 || say "docker compose down failed (see $work/down.log)"
      lap "down -v" $t
    fi
  fi
  if [ "$engine_started" = 1 ] && ! keep_stack; then
    "$project_dir/scripts/docker/ensure_engine.sh" stop
  fi
  [ ${#timings[@]} -gt 0 ] && print_timings
  exit $rc
}

# A Docker engine (ensure_engine.sh: none and CI=true -> installed and started; none outside CI
# -> SKIPPED, exit 0), .venv, and the base image (built with debootstrap, or pulled).
engine_and_base_image() {  # the make target named in the SKIPPED message
  local t=$SECONDS had_pid_file=0 rc
  [ -f "$engine_pid_file" ] && had_pid_file=1
  "$project_dir/scripts/docker/ensure_engine.sh" start
  rc=$?
  if [ $rc = 3 ]; then
    if [ "${CI:-}" = true ]; then fail "no Docker engine (CI=true: an unavailable engine is a failure)"; fi
    say "SKIPPED: no Docker engine is running (start one, or ENGINE_INSTALL=1 as root, then: make $1)"
    # make test's summary (scripts/run_tests.sh) names the skip and why
    [ -z "${SKIP_REASON_FILE:-}" ] || echo "no usable Docker engine (none answers, or compose v2 is missing)" >"$SKIP_REASON_FILE"
    exit 0
  fi
  [ $rc = 0 ] || fail "could not get a Docker engine (ensure_engine.sh exit $rc)"
  if [ "$had_pid_file" = 0 ] && [ -f "$engine_pid_file" ]; then engine_started=1; fi
  [ -x "$project_dir/.venv/bin/pytest" ] || fail ".venv missing: run 'make setup' first"
  if ! docker image inspect "$base_image" >/dev/null 2>&1; then
    if [ "$base_image" = accidents-base:local ]; then
      "$project_dir/scripts/docker/build_base_image.sh" "$base_image" || fail "base image build failed"
    else
      docker pull "$base_image" || fail "cannot pull $base_image (no registry? leave BASE_IMAGE unset to build accidents-base:local)"
    fi
  fi
  lap "engine + base image" $t
}

# The real BAAC mirror (BAAC_DATA_DIR, else ../shared/data/baac beside the checkout) -> $baac.
find_baac() {
  baac="${BAAC_DATA_DIR:-}"
  if [ -z "$baac" ] && [ -d "$project_dir/../shared/data/baac" ]; then baac="$project_dir/../shared/data/baac"; fi
  [ -n "$baac" ] && [ -d "$baac" ] || fail "real BAAC data not found: set BAAC_DATA_DIR"
  baac="$(cd "$baac" && pwd)"
}

# After a failed `up --wait`: everything to $work/logs.txt, then (last, so the tail of a CI log
# shows it) the logs of the services that are not running healthy or did not exit 0 -- the one
# that broke, not the chattiest --, up's own error and each container's state. One `ps` and one
# `logs` call: the per-service tails are cut from the same snapshot.
report_unhealthy() {
  dc logs --no-color --timestamps >"$work/logs.txt" 2>&1
  local service state health code status bad=() waiting=() states=()
  while IFS='|' read -r service state health code status; do
    states+=("$(printf '%-24s %s' "$service" "$status")")
    case "$state/$health/$code" in
      running/healthy/*|running//*|exited/*/0) ;;
      created/*) waiting+=("$service") ;;  # never started: waits on one that broke
      *) bad+=("$service") ;;
    esac
  done < <(dc ps -a --format '{{.Service}}|{{.State}}|{{.Health}}|{{.ExitCode}}|{{.Status}}')
  for service in "${bad[@]}"; do
    echo "----- $service (last 60 lines) -----"
    grep -E "^$service-[0-9]+ +\|" "$work/logs.txt" | tail -n 60
  done
  echo "----- docker compose up -----"
  tail -n 20 "$work/up.log"
  echo "----- containers -----"
  printf '%s\n' "${states[@]}"
  [ ${#waiting[@]} -gt 0 ] && say "never started (waiting on the above): ${waiting[*]}"
  fail "the stack did not become healthy: ${bad[*]:-no service named by docker} (all logs: $work/logs.txt)"
}
