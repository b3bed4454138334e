"""What the API reads from the MLflow registry, through the tracking server's REST API.

Four documented read-only endpoints: the version behind the champion alias, its run's metrics,
its download URI, and the model file itself from the server's artifact proxy
(`mlflow server --serve-artifacts`, how scripts/mlflow_server.sh and compose run it). Not the
official `mlflow` client: importing any part of it runs `mlflow/__init__`, which loads its GenAI,
tracing, data and gateway modules, +50 MB of the API's resident memory for four GET requests
(measured: README, Benchmarks). The pipeline keeps the official client (accidents.model.registry).

The model file is loaded exactly as the pipeline's own copy is: skops with our allow-list
(accidents.model.model_store), then the contract check. Before that, the version's serving
metadata must be in range (check_serving_metadata): a registry tag is text anyone with EDIT on the
model can write, and `float("nan")` or `float("5")` parse; a NaN threshold would call every
accident "not severe", 5 likewise, silently. Such a version is rejected and the current one kept.

Credentials: MLflow's own MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (a READ account:
the API cannot move an alias); the admin routes' writes (promotion) use
MLFLOW_PROMOTER_USERNAME / MLFLOW_PROMOTER_PASSWORD when set (scripts/mlflow_accounts.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlparse

import httpx

from accidents.config import CHAMPION_ALIAS
from accidents.features import SEED_EXAMPLE
from accidents.model.model_store import (
    MODEL_FILE,
    ModelBundle,
    ModelLoadError,
    ModelMetadata,
    checked_bundle,
    loads_model,
)
from accidents.model.registry import TAG_THRESHOLD, metadata_from

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
# Error codes the alias lookup answers when there is no champion (no model, or no such alias).
NO_CHAMPION_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})


class RegistryError(Exception):
    """The registry could not be read: unreachable, or it answered with an error."""

    def __init__(self, message: str, error_code: str | None = None):
        super().__init__(message)
        self.error_code = error_code


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str | None
    tags: dict[str, str]
    creation_timestamp: int


class MlflowRegistry:
    def __init__(self, tracking_uri: str, timeout_seconds: float):
        self.tracking_uri = tracking_uri.rstrip("/")
        self._usable = self.tracking_uri.startswith(("http://", "https://"))
        self._http = httpx.Client(base_url=self.tracking_uri, timeout=timeout_seconds, auth=_auth_from_env())
        self._http.headers.update(_token_header_from_env())
        self._write_auth = _auth_from_env("MLFLOW_PROMOTER_")  # None: the reading account writes too

    def close(self) -> None:
        self._http.close()

    def champion_version(self, name: str) -> RegisteredVersion | None:
        """The version holding the champion alias of registered model `name`, or None when there is none yet."""
        return self.alias_version(CHAMPION_ALIAS, name)

    def alias_version(self, alias: str, name: str) -> RegisteredVersion | None:
        """The version holding `alias`, or None when no version holds it."""
        try:
            version = self._get_json("/registered-models/alias", {"name": name, "alias": alias}, "model_version")
        except RegistryError as error:
            if error.error_code in NO_CHAMPION_CODES:
                return None
            raise
        with _unexpected_answer("/registered-models/alias"):
            return RegisteredVersion(
                name=version["name"],
                version=str(version["version"]),
                run_id=version.get("run_id") or None,
                tags={tag["key"]: tag["value"] for tag in version.get("tags", ())},
                creation_timestamp=int(version.get("creation_timestamp") or 0),
            )

    def load_version(self, version: RegisteredVersion, example: Sequence[float] = SEED_EXAMPLE) -> ModelBundle:
        """Download one registered version's model file, load it with our own skops allow-list and
        check it scores its contract's `example` row (the seed's by default)."""
        metrics: dict[str, float] = {}
        if version.run_id:
            run = self._get_json("/runs/get", {"run_id": version.run_id}, "run")
            with _unexpected_answer("/runs/get"):
                metrics = {metric["key"]: float(metric["value"]) for metric in run.get("data", {}).get("metrics", ())}
        metadata = check_serving_metadata(
            metadata_from(version.name, version.version, version.run_id, version.tags, metrics)
        )
        where = {"name": version.name, "version": version.version}
        artifact_uri = self._get_json("/model-versions/get-download-uri", where, "artifact_uri")
        model = loads_model(self._download(artifact_uri, MODEL_FILE, version.version))
        return checked_bundle(model, metadata, example)

    def recent_runs(self, experiment_name: str, limit: int) -> list[dict[str, Any]]:
        """The newest runs of an experiment (runs/search, read-only), as MLflow answers them;
        [] when the experiment does not exist yet."""
        try:
            experiment = self._get_json("/experiments/get-by-name", {"experiment_name": experiment_name}, "experiment")
        except RegistryError as error:
            if error.error_code in NO_CHAMPION_CODES:
                return []
            raise
        body = {"experiment_ids": [experiment["experiment_id"]], "max_results": limit,
                "order_by": ["attributes.start_time DESC"]}  # fmt: skip
        try:
            response = self._http.post(API + "/runs/search", json=body)
        except httpx.HTTPError as error:
            raise RegistryError(f"MLflow at {self.tracking_uri} is unreachable: {error!r}") from error
        _raise_for_error(response)
        with _unexpected_answer("/runs/search"):
            return list(response.json().get("runs", []))

    # --- writes: promotion and drop of the challenger through the API (api/routes/model.py) -------
    # Every read and write names its registered model: both number their versions from 1, and a
    # default name once made a report-time promotion move the seed's aliases.

    def set_alias(self, alias: str, version: str, name: str) -> None:
        self._send("POST", "/registered-models/alias", {"name": name, "alias": alias, "version": version})

    def delete_alias(self, alias: str, name: str) -> None:
        """Remove `alias` (no error when no version holds it)."""
        try:
            self._send("DELETE", "/registered-models/alias", {"name": name, "alias": alias})
        except RegistryError as error:
            if error.error_code not in NO_CHAMPION_CODES:
                raise

    def set_version_tags(self, version: str, tags: dict[str, str], name: str) -> None:
        for key, value in tags.items():
            self._send("POST", "/model-versions/set-tag", {"name": name, "version": version, "key": key,
                                                           "value": value})  # fmt: skip

    def _send(self, method: str, endpoint: str, body: dict[str, str]) -> None:
        if not self._usable:
            self._request(API + endpoint)  # raises the clear "must be an http(s) URL" error
        try:
            response = self._http.request(
                method, API + endpoint, json=body, auth=self._write_auth or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.HTTPError as error:
            raise RegistryError(f"MLflow at {self.tracking_uri} is unreachable: {error!r}") from error
        _raise_for_error(response)

    def _download(self, artifact_uri: str, file_name: str, version: str) -> bytes:
        parsed = urlparse(artifact_uri)
        if parsed.scheme != "mlflow-artifacts" or parsed.netloc:
            raise ModelLoadError(
                f"version {version} is stored at {artifact_uri}, which the tracking server does not proxy: "
                "run `mlflow server` with --serve-artifacts (as scripts/mlflow_server.sh does)"
            )
        path = quote(f"{parsed.path.strip('/')}/{file_name}")
        response = self._request(f"{ARTIFACTS}/{path}")
        if response.status_code == httpx.codes.NOT_FOUND:
            raise ModelLoadError(f"version {version} has no {file_name}")
        _raise_for_error(response)
        return response.content

    def _get_json(self, endpoint: str, params: dict[str, str], field: str) -> Any:
        """`field` of the JSON answer of a GET on `endpoint`."""
        response = self._request(API + endpoint, params)
        _raise_for_error(response)
        with _unexpected_answer(endpoint):
            return response.json()[field]

    def _request(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        if not self._usable:
            raise RegistryError(
                f"the API reads the registry through MLflow's REST API: MLFLOW_TRACKING_URI must be an "
                f"http(s) URL of a tracking server, got {self.tracking_uri!r}"
            )
        try:
            return self._http.get(path, params=params)
        except httpx.HTTPError as error:
            raise RegistryError(f"MLflow at {self.tracking_uri} is unreachable: {error!r}") from error


@contextmanager
def _unexpected_answer(endpoint: str) -> Iterator[None]:
    """An answer without the documented fields is a registry error, like a refused connection."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise RegistryError(f"MLflow answered {endpoint} with an unexpected body: {error!r}") from error


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = body.get("error_code") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    raise RegistryError(f"MLflow answered {response.status_code} {code or ''}: {message or response.text[:200]}", code)


def check_serving_metadata(metadata: ModelMetadata) -> ModelMetadata:
    """`metadata` when every value serving relies on is in range; else ModelLoadError saying which."""
    threshold = metadata.threshold
    if not math.isfinite(threshold) or not 0.0 < threshold < 1.0:
        raise ModelLoadError(
            f"version {metadata.version} has {TAG_THRESHOLD}={threshold!r}: a probability threshold "
            "must be a finite number strictly between 0 and 1"
        )
    odd = sorted(key for key, value in metadata.metrics.items() if not math.isfinite(value))
    if odd:
        raise ModelLoadError(f"version {metadata.version} has non-finite metrics: {', '.join(odd)}")
    return metadata


def _auth_from_env(prefix: str = "MLFLOW_TRACKING_") -> httpx.BasicAuth | None:
    """The official client's credential variables (or another prefix's), for MLflow's basic auth."""
    username, password = os.environ.get(prefix + "USERNAME"), os.environ.get(prefix + "PASSWORD")
    return httpx.BasicAuth(username, password) if username and password else None


def _token_header_from_env() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}
