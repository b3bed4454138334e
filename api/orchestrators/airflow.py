"""Retraining through Airflow 3's REST API v2 (the `accidents.config.DAG_ID` DAG).

Token: `POST {url}/auth/token` with JSON credentials -> `access_token` (renewed on 401).
Single flight holds across runs started elsewhere (UI, schedule, another API replica): before
triggering, the DAG's queued/running runs are listed and the first one answers the conflict.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

import httpx

from accidents.config import DAG_ID
from api.orchestrators.base import (
    Orchestrator,
    OrchestratorUnavailableError,
    RetrainConflictError,
    RetrainRun,
    RunNotFoundError,
)

ACTIVE_STATES = ("queued", "running")


class AirflowOrchestrator(Orchestrator):
    name = "airflow"

    def __init__(self, base_url: str, username: str, password: str, timeout: float, dag_id: str = DAG_ID):
        self.base_url = base_url.rstrip("/")
        self.dag_id = dag_id
        self._credentials = {"username": username, "password": password}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None
        self._lock = threading.Lock()

    def trigger(self, reason: str) -> RetrainRun:
        with self._lock:  # list-then-trigger is atomic within this process
            active = self._request("GET", self._runs_path(), params={"state": list(ACTIVE_STATES), "limit": 1})
            runs = active.get("dag_runs") or []
            if runs:
                raise RetrainConflictError(runs[0].get("dag_run_id"))
            created = self._request("POST", self._runs_path(), json={"logical_date": None, "conf": {"reason": reason}})
        return self._run(created)

    def status(self, run_id: str) -> RetrainRun:
        path = f"{self._runs_path()}/{quote(run_id, safe='')}"
        run = self._request("GET", path, not_found=f"no retraining run {run_id}")
        tasks = self._request("GET", f"{path}/taskInstances", not_found=f"no retraining run {run_id}")
        return self._run(run, tasks.get("task_instances") or [])

    def close(self) -> None:
        self._http.close()

    def _runs_path(self) -> str:
        return f"/api/v2/dags/{self.dag_id}/dagRuns"

    def _run(self, data: dict[str, Any], tasks: list[dict[str, Any]] | None = None) -> RetrainRun:
        return RetrainRun(
            run_id=str(data.get("dag_run_id")),
            state=str(data.get("state") or "queued"),
            orchestrator=self.name,
            started_at=data.get("start_date"),
            finished_at=data.get("end_date"),
            detail=f"Airflow DAG {self.dag_id}",
            tasks=[{"task_id": task.get("task_id"), "state": task.get("state")} for task in tasks or []],
            reason=str((data.get("conf") or {}).get("reason") or ""),
        )

    def _request(self, method: str, path: str, not_found: str | None = None, **kwargs: Any) -> dict[str, Any]:
        response = self._send(method, path, **kwargs)
        if response.status_code == 401:  # token expired: renew once
            self._token = None
            response = self._send(method, path, **kwargs)
        if response.status_code == 404:
            if not_found:
                raise RunNotFoundError(not_found)
            raise OrchestratorUnavailableError(f"Airflow has no DAG {self.dag_id!r} (is the DAG folder loaded?)")
        if response.status_code >= 400:
            raise OrchestratorUnavailableError(f"Airflow answered {response.status_code} to {method} {path}")
        return _json(response)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            headers = {"Authorization": f"Bearer {self._access_token()}"}
            return self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            raise OrchestratorUnavailableError(f"Airflow at {self.base_url} is unreachable: {error}") from error

    def _access_token(self) -> str:
        if self._token is None:
            response = self._http.post("/auth/token", json=self._credentials)
            if response.status_code >= 400:
                raise OrchestratorUnavailableError(f"Airflow refused the API's credentials ({response.status_code})")
            token = _json(response).get("access_token")
            if not isinstance(token, str):
                raise OrchestratorUnavailableError("Airflow's /auth/token answer has no access_token")
            self._token = token
        return self._token


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as error:
        raise OrchestratorUnavailableError(f"Airflow answered non-JSON to {response.request.url.path}") from error
    if not isinstance(data, dict):
        raise OrchestratorUnavailableError(f"unexpected Airflow answer to {response.request.url.path}")
    return data
