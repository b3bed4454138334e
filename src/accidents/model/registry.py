"""MLflow model registry access shared by the pipeline and the API.

The serving model is the registered model MODEL_NAME's version carrying alias CHAMPION_ALIAS.
Each version carries tags with what serving needs (threshold, data source, training time);
its run carries the metrics.

MLflow is imported inside the functions that use it: the API imports this module for the tags
and `metadata_from` without loading MLflow's client (about 50 MB; README, Benchmarks).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from accidents.config import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    MODEL_NAME,
    TAG_DATA_SOURCE,
    TAG_FAMILY,
    TAG_THRESHOLD,
    TAG_TRAINED_AT,
    tracking_uri,
)
from accidents.features import SEED_EXAMPLE
from accidents.model.model_store import (
    MODEL_FILE,
    ModelBundle,
    ModelLoadError,
    ModelMetadata,
    checked_bundle,
    loads_model,
)
from accidents.stage import PipelineError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


def client(uri: str | None = None) -> MlflowClient:
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion_version(mlflow_client: MlflowClient, name: str = MODEL_NAME) -> ModelVersion | None:
    """The version holding the champion alias, or None when there is none yet."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def clear_challenger(mlflow_client: MlflowClient, name: str = MODEL_NAME) -> None:
    """Remove the challenger alias (no-op when no version carries it)."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.delete_registered_model_alias(name, CHALLENGER_ALIAS)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise


def metadata_of(mlflow_client: MlflowClient, version: ModelVersion) -> ModelMetadata:
    metrics = mlflow_client.get_run(version.run_id).data.metrics if version.run_id else {}
    return metadata_from(version.name, str(version.version), version.run_id, version.tags or {}, metrics)


def metadata_from(
    name: str, version: str, run_id: str | None, tags: dict[str, str], metrics: dict[str, float]
) -> ModelMetadata:
    """Serving metadata from a registered version's tags and its run's metrics."""
    try:
        threshold = float(tags[TAG_THRESHOLD])
    except (KeyError, ValueError) as error:
        raise ModelLoadError(f"version {version} has no valid {TAG_THRESHOLD} tag") from error
    return ModelMetadata(
        model_name=name,
        version=version,
        run_id=run_id,
        threshold=threshold,
        data_source=tags.get(TAG_DATA_SOURCE, "unknown"),
        trained_at=tags.get(TAG_TRAINED_AT, ""),
        model_family=tags.get(TAG_FAMILY, "unknown"),
        metrics={key: float(value) for key, value in metrics.items()},
    )


def load_version(
    mlflow_client: MlflowClient, version: ModelVersion, example: Sequence[float] = SEED_EXAMPLE
) -> ModelBundle:
    """Download one registered version and load it with our own skops allow-list; it must score
    its contract's `example` row (the seed's by default)."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    metadata = metadata_of(mlflow_client, version)
    with tempfile.TemporaryDirectory(prefix="accidents-model-") as folder:
        try:
            local = download_artifacts(
                artifact_uri=f"models:/{version.name}/{version.version}",
                dst_path=folder,
                tracking_uri=mlflow_client._tracking_client.tracking_uri,
            )
        except MlflowException as error:
            raise ModelLoadError(f"cannot download version {version.version}: {error}") from error
        model_file = Path(local) / MODEL_FILE
        if not model_file.is_file():
            raise ModelLoadError(f"version {version.version} has no {MODEL_FILE}")
        model = loads_model(model_file.read_bytes())
    return checked_bundle(model, metadata, example)


def load_champion(mlflow_client: MlflowClient, name: str = MODEL_NAME) -> ModelBundle | None:
    version = champion_version(mlflow_client, name)
    return None if version is None else load_version(mlflow_client, version)


def unreachable_reason(uri: str, timeout: float = 3.0) -> str | None:
    """Why an http(s) tracking server does not answer /health, or None when it does.

    A short probe: MLflow's own client retries for minutes. Other URIs (local stores): None.
    """
    if not uri.startswith(("http://", "https://")):
        return None
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except requests.RequestException as error:
        return f"MLflow at {uri} is unreachable: {error}"
    return None


def is_reachable(uri: str, timeout: float = 3.0) -> bool:
    return unreachable_reason(uri, timeout) is None


def connect(uri: str | None = None) -> str:
    """Point MLflow's fluent API (runs, registration) at the tracking server, or fail clearly."""
    import mlflow

    uri = uri or tracking_uri()
    if not is_reachable(uri):
        raise PipelineError(f"MLflow tracking server {uri} is not reachable: start it with `make mlflow`")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri
