"""The MLflow accounts of the stack, created through the auth app's REST API (idempotent).

MLflow runs with `--app-name basic-auth` (scripts/mlflow_server.sh when MLFLOW_AUTH_ADMIN_PASSWORD
is set, docker/app/mlflow-server.sh always): every request needs a login, and a login holds only
the rights granted to it. Without this, anyone who reaches MLflow can move `champion`, which the
API then serves (issue #23 item 5). The accounts:

    admin     MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD  people (UI) and this script;
              MLflow creates it at first start from that password (none by default, and it
              refuses the old default `password1234`)
    pipeline  MLFLOW_PIPELINE_USERNAME / MLFLOW_PIPELINE_PASSWORD    EDIT on every experiment, MANAGE
              on every registered model: runs, versions, tags, aliases set and deleted (train,
              evaluate, monitoring jobs)
    api       MLFLOW_API_USERNAME / MLFLOW_API_PASSWORD              READ (the server's default
              permission): the API polls and downloads the champion, cannot move an alias
    promoter  MLFLOW_PROMOTER_USERNAME / MLFLOW_PROMOTER_PASSWORD    optional: MANAGE on registered
              models only, for the API's admin route POST /model/promote

It also creates the registered models when missing: the seed's (accidents.config.MODEL_NAME, or
MLFLOW_REGISTERED_MODEL) and the report-time model's (REPORT_MODEL_NAME), so the API's first
look for either champion reads "none yet", not the 403 of a model that does not exist.
A client logs in with MLflow's own variables MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.
Passwords already set are updated to the configured ones (the settings win, as for Airflow's).

    python scripts/mlflow_accounts.py http://mlflow:5000     (reads the variables above)
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from accidents.config import MODEL_NAME, REPORT_MODEL_NAME

USERS = "/api/2.0/mlflow/users"
GRANT = "/api/3.0/mlflow/users/permissions/grant"
# (resource type, permission) each role gets on every resource of that type ("*")
ROLE_GRANTS: dict[str, tuple[tuple[str, str], ...]] = {
    # MANAGE on registered models: MLflow 3.17 lets EDIT set an alias but asks for MANAGE to delete
    # one, and evaluate and POST /model/promote delete the challenger alias (seen as a 403 in compose)
    "pipeline": (("experiment", "EDIT"), ("registered_model", "MANAGE")),
    "api": (),  # READ: the server's default_permission
    "promoter": (("registered_model", "MANAGE"),),
}
MIN_PASSWORD_LENGTH = 12  # MLflow refuses shorter passwords


class AccountError(Exception):
    """The accounts could not be set up (the message says which and why)."""


@dataclass(frozen=True)
class Account:
    role: str
    username: str
    password: str


def accounts_from_env(env: Mapping[str, str]) -> list[Account]:
    """The pipeline and api accounts (required) and the promoter (when its password is set)."""
    accounts = []
    for role in ROLE_GRANTS:
        prefix = f"MLFLOW_{role.upper()}_"
        password = env.get(prefix + "PASSWORD") or ""
        if not password and role == "promoter":
            continue
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(f"{prefix}PASSWORD must be set to at least {MIN_PASSWORD_LENGTH} characters")
        accounts.append(Account(role, env.get(prefix + "USERNAME") or role, password))
    return accounts


class AuthAdmin:
    """The admin side of MLflow's auth app, over HTTP with basic auth (standard library only)."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 10.0):
        if not url.startswith(("http://", "https://")):
            raise AccountError(f"MLflow's URL must be http(s), got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    def call(self, method: str, path: str, body: dict[str, str]) -> tuple[int, dict]:
        request = urllib.request.Request(  # noqa: S310 - http(s) checked in __init__
            self.url + path, data=json.dumps(body).encode(), method=method,
            headers={"Authorization": self._auth, "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) checked
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, {"message": text[:200]}

    def ensure_user(self, account: Account) -> None:
        body = {"username": account.username, "password": account.password}
        status, answer = self.call("POST", USERS + "/create", body)
        if status == 200:
            return
        if answer.get("error_code") != "RESOURCE_ALREADY_EXISTS":
            raise AccountError(f"creating MLflow user {account.username!r}: HTTP {status} {answer}")
        status, answer = self.call("PATCH", USERS + "/update-password", body)
        if status != 200:
            raise AccountError(f"setting the password of MLflow user {account.username!r}: HTTP {status} {answer}")

    def ensure_registered_model(self, name: str) -> None:
        """Create the registered model (as the admin) when missing: the auth app denies every read
        of a model that does not exist yet (403, even for the alias lookup of a first start), and
        a model its creator made would give that creator MANAGE on it."""
        status, answer = self.call("POST", "/api/2.0/mlflow/registered-models/create", {"name": name})
        if status != 200 and answer.get("error_code") != "RESOURCE_ALREADY_EXISTS":
            raise AccountError(f"creating the registered model {name!r}: HTTP {status} {answer}")

    def ensure_grant(self, username: str, resource_type: str, permission: str) -> None:
        body = {"username": username, "resource_type": resource_type, "resource_id": "*", "permission": permission}
        status, answer = self.call("POST", GRANT, body)
        if status != 200 and answer.get("error_code") != "RESOURCE_ALREADY_EXISTS":
            raise AccountError(f"granting {permission} on {resource_type} to {username!r}: HTTP {status} {answer}")


def provision(url: str, env: Mapping[str, str]) -> list[Account]:
    """Create (or update) every account and its grants; returns them."""
    admin_password = env.get("MLFLOW_AUTH_ADMIN_PASSWORD") or ""
    if not admin_password:
        raise AccountError("MLFLOW_AUTH_ADMIN_PASSWORD must be set (the MLflow admin's password)")
    admin = AuthAdmin(url, env.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin", admin_password)
    status, answer = admin.call("GET", USERS + "/current", {})
    if status != 200:
        raise AccountError(f"the MLflow admin login is refused at {url}: HTTP {status} {answer.get('message', '')}")
    accounts = accounts_from_env(env)
    for name in (env.get("MLFLOW_REGISTERED_MODEL") or MODEL_NAME, REPORT_MODEL_NAME):
        admin.ensure_registered_model(name)
    for account in accounts:
        admin.ensure_user(account)
        for resource_type, permission in ROLE_GRANTS[account.role]:
            admin.ensure_grant(account.username, resource_type, permission)
    return accounts


def wait_healthy(url: str, timeout: float = 180.0) -> None:
    if not url.startswith(("http://", "https://")):
        raise AccountError(f"MLflow's URL must be http(s), got {url!r}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AccountError(f"MLflow at {url} did not answer /health within {timeout:.0f} s")
        time.sleep(1)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        wait_healthy(argv[0])
        accounts = provision(argv[0], os.environ)
    except AccountError as error:
        print(f"mlflow_accounts: {error}", file=sys.stderr)
        return 1
    print("mlflow_accounts: " + ", ".join(f"{a.username} ({a.role})" for a in accounts) + " ready")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
