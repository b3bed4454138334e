#!/usr/bin/env bash
# First start of the PostgreSQL volume: one database and one user per service. Passwords from
# the environment (docker-compose.yml passes them from .env); psql variables quote them.
#   AIRFLOW_DB_PASSWORD -> user/database airflow   (Airflow's metadata)
#   MLFLOW_DB_PASSWORD  -> user/database mlflow    (MLflow's tracking store and model registry)
#   API_DB_PASSWORD     -> user/database api       (the API's users)
set -euo pipefail
create() {  # name password
  psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --username postgres --dbname postgres \
    -v name="$1" -v password="$2" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name" ENCODING 'UTF8';
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
  echo "postgres: database and user $1 created"
}
create airflow "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD must be set}"
create mlflow "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD must be set}"
create api "${API_DB_PASSWORD:?API_DB_PASSWORD must be set}"
