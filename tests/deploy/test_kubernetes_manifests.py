"""deploy/kubernetes/: the manifests validate offline against the Kubernetes API schemas that
kubernetes-validate ships (strict: unknown fields are errors), and say what the README promises:
probes on /ready and /health, memory sized from the measured RSS, an HPA on CPU, MLflow on
PostgreSQL + S3, Airflow's Helm values with the CeleryExecutor. Nothing here talks to a cluster.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
HELM_VALUES = K8S / "airflow-values.yaml"
KUBERNETES_VERSION = "1.37.0"
MEMORY_BENCH = ROOT / "bench" / "results" / "2026-12-01-api-memory.json"


def documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path == HELM_VALUES:
            continue
        docs += [
            (f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
            for doc in yaml.safe_load_all(path.read_text())
            if doc
        ]
    return docs


def by_kind(kind: str, name: str) -> dict:
    return next(doc for _, doc in documents() if doc["kind"] == kind and doc["metadata"]["name"] == name)


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi)", quantity).groups()
    return float(number) * (1024 if unit == "Gi" else 1)


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[name for name, _ in documents()])
def test_manifest_validates_against_the_kubernetes_schema(name, doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_validator_rejects_a_broken_manifest():
    """The validator really checks (offline): a misspelt field and a wrong type fail."""
    deployment = by_kind("Deployment", "accidents-api")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    misspelt = json.loads(json.dumps(deployment))
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSION, strict=True)


def test_api_probes_resources_and_autoscaling():
    deployment = by_kind("Deployment", "accidents-api")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    measured = json.loads(MEMORY_BENCH.read_text())["api"]
    rss = max(measured["rss_mb"], measured["rss_after_load_runs_mb"]) * 1e6 / 2**20  # MB -> MiB
    request = mebibytes(container["resources"]["requests"]["memory"])
    limit = mebibytes(container["resources"]["limits"]["memory"])
    assert rss <= request <= 1.5 * rss, (rss, request)
    assert limit >= 2 * rss * 0.9, "room for a model swap (two models loaded for a moment)"
    assert container["resources"]["requests"]["cpu"]
    hpa = by_kind("HorizontalPodAutoscaler", "accidents-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "accidents-api"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    service = by_kind("Service", "accidents-api")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    refs = {ref.get("configMapRef", ref.get("secretRef", {})).get("name") for ref in container["envFrom"]}
    assert refs == {"accidents-config", "accidents-api"}


def test_api_believes_x_forwarded_for_from_the_ingress_only():
    """Issue #23 item 1: uvicorn's FORWARDED_ALLOW_IPS names networks, never every client."""
    container = by_kind("Deployment", "accidents-api")["spec"]["template"]["spec"]["containers"][0]
    assert not any(arg.startswith("--forwarded-allow-ips") for arg in container["command"]), container["command"]
    (trusted,) = [item["value"] for item in container["env"] if item["name"] == "FORWARDED_ALLOW_IPS"]
    networks = [ipaddress.ip_network(entry.strip()) for entry in trusted.split(",")]  # "*" raises here
    assert all(network.prefixlen >= 8 for network in networks), networks


def test_mlflow_on_postgresql_and_s3_without_secrets_in_files():
    config = by_kind("ConfigMap", "accidents-config")["data"]
    assert config["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    mlflow = by_kind("Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert {"configMapRef": {"name": "accidents-config"}} in mlflow["envFrom"]
    assert {"secretRef": {"name": "accidents-mlflow"}} in mlflow["envFrom"]  # the PostgreSQL URI, S3 keys
    assert not [doc for _, doc in documents() if doc["kind"] == "Secret"], "secrets are created, not committed"


def test_airflow_helm_values():
    values = yaml.safe_load(HELM_VALUES.read_text())
    assert values["executor"] == "CeleryExecutor" and values["workers"]["replicas"] == 2
    assert values["postgresql"]["enabled"] is False and values["data"]["metadataSecretName"]
    env = {item["name"]: item["value"] for item in values["env"]}
    assert env["ACCIDENTS_STAGE_EXCHANGE"].startswith("s3://")
    assert {item["envName"] for item in values["secret"]} >= {"S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"}
