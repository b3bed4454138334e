#!/usr/bin/env bash
# First start of the PostgreSQL volume: one database and one user per service, each with only the
# rights it needs. Passwords from the environment (docker-compose.yml passes them from .env); psql
# variables quote them.
#   AIRFLOW_DB_PASSWORD    -> user/database airflow      (Airflow's metadata)
#   MLFLOW_DB_PASSWORD     -> user/database mlflow       (MLflow's tracking store and model registry)
#                             and database mlflow_auth   (MLflow's basic-auth users and permissions)
#   API_DB_PASSWORD        -> user/database api          (the API's users)
#                             and database predictions   (the prediction log, its migrations)
#   MONITORING_DB_PASSWORD -> user monitoring: the monitoring jobs (Airflow) on the prediction log
#                             only: SELECT and INSERT on its tables (rows logged, results stored),
#                             no UPDATE/DELETE/DDL, no access to the users database
set -euo pipefail
sql() {  # database, then psql -v name=value pairs; the SQL on stdin
  local database="$1"
  shift
  psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --username postgres --dbname "$database" "$@"
}
create_role() {  # name password
  sql postgres -v name="$1" -v password="$2" <<<"CREATE ROLE :\"name\" LOGIN PASSWORD :'password';"
}
create_database() {  # name owner
  sql postgres -v name="$1" -v owner="$2" <<'SQL'
CREATE DATABASE :"name" OWNER :"owner" ENCODING 'UTF8';
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
  echo "postgres: database $1 (owner $2) created"
}
create_role airflow "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD must be set}"
create_database airflow airflow
create_role mlflow "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD must be set}"
create_database mlflow mlflow
create_database mlflow_auth mlflow
create_role api "${API_DB_PASSWORD:?API_DB_PASSWORD must be set}"
create_database api api
create_database predictions api
create_role monitoring "${MONITORING_DB_PASSWORD:?MONITORING_DB_PASSWORD must be set}"
# The log's tables do not exist yet (the API's migrations create them, as user api): default
# privileges give the monitoring role its rights on every table api creates there later.
sql predictions <<'SQL'
GRANT CONNECT ON DATABASE predictions TO monitoring;
GRANT USAGE ON SCHEMA public TO monitoring;
ALTER DEFAULT PRIVILEGES FOR ROLE api IN SCHEMA public GRANT SELECT, INSERT ON TABLES TO monitoring;
ALTER DEFAULT PRIVILEGES FOR ROLE api IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO monitoring;
SQL
echo "postgres: user monitoring may read and append to the prediction log (database predictions)"
