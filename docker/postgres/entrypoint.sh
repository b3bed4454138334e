#!/usr/bin/env bash
# PostgreSQL in a container (like the official image, in short): on an empty $PGDATA, initdb
# with the superuser password POSTGRES_PASSWORD, run /docker-entrypoint-initdb.d/*.sh against a
# server listening on the local socket only, then start the real server (PID 1, all addresses;
# password authentication, scram-sha-256, for every TCP client).
set -euo pipefail
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGDATA
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (in .env)}"
  echo "postgres: initialising $PGDATA"
  pwfile="$(mktemp)"
  printf '%s' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --pgdata="$PGDATA" --username=postgres --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
  for script in /docker-entrypoint-initdb.d/*.sh; do
    [ -f "$script" ] || continue
    echo "postgres: running $script"
    bash "$script"
  done
  pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
  echo "postgres: initialised"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
