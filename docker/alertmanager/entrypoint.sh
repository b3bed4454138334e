#!/bin/sh
# The receiver's bearer secret from the environment into the credentials file of
# /etc/alertmanager/alertmanager.yml (0600), then Alertmanager (one instance: no cluster port).
set -eu
: "${ALERTS_RECEIVER_TOKEN:?ALERTS_RECEIVER_TOKEN is not set: the API's alert receiver would refuse every notification}"
umask 077
printf '%s' "$ALERTS_RECEIVER_TOKEN" >/run/alertmanager/receiver_token
unset ALERTS_RECEIVER_TOKEN
exec prometheus-alertmanager --config.file=/etc/alertmanager/alertmanager.yml --storage.path=/alertmanager \
  --web.listen-address=0.0.0.0:9093 --cluster.listen-address= "$@"
