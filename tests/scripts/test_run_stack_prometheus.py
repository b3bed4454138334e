"""`make run PROMETHEUS=1`: the switch, its errors, and the real Prometheus and Alertmanager it
starts (the host's Debian binaries): Prometheus scrapes the API's port with the repo's rules and
sends them to the Alertmanager, which delivers to the API's receiver with the receiver's own
secret (the one the API gets); both stopped with the stack."""

from __future__ import annotations

import pytest
import requests
import run_stack
import yaml
from stack_supervisor import ConfigurationError, Console, Supervisor

from accidents.config import PROMETHEUS_PORT, Paths
from api.core.security import weak_secret_reason
from tests.support.processes import free_port
from tests.support.prometheus import binary

REPO = Paths(run_stack.PROJECT)


def test_prometheus_is_off_by_default_and_the_switch_is_validated(tmp_path):
    settings = run_stack.load_settings(tmp_path, environ={})
    assert settings.prometheus is False and settings.prometheus_port == PROMETHEUS_PORT
    assert run_stack.prometheus_binary(settings) is None
    assert "Prometheus" not in run_stack.banner(settings, 1)
    on = run_stack.load_settings(tmp_path, environ={"PROMETHEUS": "1", "PROMETHEUS_PORT": "9191"})
    assert on.prometheus and on.prometheus_port == 9191 and "127.0.0.1:9191/alerts" in run_stack.banner(on, 1)
    with pytest.raises(ConfigurationError, match=r"use 1 \(on\) or 0"):
        run_stack.load_settings(tmp_path, environ={"PROMETHEUS": "maybe"})
    missing = run_stack.load_settings(tmp_path, environ={"PROMETHEUS": "1", "PATH": str(tmp_path)})
    with pytest.raises(ConfigurationError, match="apt-get install prometheus"):
        run_stack.prometheus_binary(missing)
    with pytest.raises(ConfigurationError, match="apt-get install prometheus-alertmanager"):
        run_stack.alertmanager_binary(missing)
    assert run_stack.alertmanager_binary(settings) is None and "ALERTS_RECEIVER_TOKEN" not in run_stack.api_env(
        settings
    )
    assert on.alertmanager_port == 9093 and "Alertmanager http://127.0.0.1:9093" in run_stack.banner(on, 1)
    clash = run_stack.load_settings(tmp_path, environ={"PROMETHEUS": "1", "ALERTMANAGER_PORT": "9090"})
    with pytest.raises(ConfigurationError, match="must differ"):
        run_stack.check_ports(clash)
    same = run_stack.load_settings(tmp_path, environ={"PROMETHEUS": "1", "PROMETHEUS_PORT": "8000"})
    with pytest.raises(ConfigurationError, match="must differ"):
        run_stack.check_ports(same)


def test_the_receiver_secret_is_generated_once_private_and_given_to_the_api(tmp_path):
    settings = run_stack.load_settings(tmp_path, environ={"PROMETHEUS": "1"})
    token = run_stack.api_env(settings)["ALERTS_RECEIVER_TOKEN"]
    path = tmp_path / "state" / "alertmanager" / "receiver_token"
    assert path.read_text() == token and path.stat().st_mode & 0o777 == 0o600
    assert run_stack.receiver_token(settings) == token  # kept across starts
    assert weak_secret_reason(token) is None
    chosen = "Yx7-q2Lw9Pz4Km8Nt3Rb6Vc1Hd5Fg0Js_Ua-Ei"
    own = run_stack.load_settings(tmp_path, environ={"PROMETHEUS": "1", "ALERTS_RECEIVER_TOKEN": chosen})
    assert run_stack.api_env(own)["ALERTS_RECEIVER_TOKEN"] == chosen and path.read_text() == chosen


def test_the_stack_starts_a_real_prometheus_on_the_api(tmp_path):
    api_port, port, manager_port = free_port(), free_port(), free_port()
    environ = {"PROMETHEUS": "1", "PROMETHEUS_PORT": str(port), "API_PORT": str(api_port), "PATH": "/usr/bin:/bin",
               "ALERTMANAGER_PORT": str(manager_port)}  # fmt: skip
    settings = run_stack.load_settings(tmp_path, environ=environ)
    sup = Supervisor(tmp_path / "logs", Console(color=False))
    try:
        manager = run_stack.start_alertmanager(settings, sup, run_stack.alertmanager_binary(settings))
        sup.wait_until("Alertmanager", lambda: run_stack.http_get(f"{settings.alertmanager_url}/-/ready")[0] == 200,
                       [manager], timeout=60)  # fmt: skip
        status = requests.get(f"{settings.alertmanager_url}/api/v2/status", timeout=10).json()
        (webhook,) = yaml.safe_load(status["config"]["original"])["receivers"][0]["webhook_configs"]
        assert webhook["url"] == f"http://127.0.0.1:{api_port}/monitoring/alerts"
        token_file = tmp_path / "state" / "alertmanager" / "receiver_token"
        assert webhook["http_config"]["authorization"]["credentials_file"] == str(token_file)
        server = run_stack.start_prometheus(settings, sup, binary("prometheus"))
        sup.wait_until("Prometheus", lambda: run_stack.http_get(f"{settings.prometheus_url}/-/ready")[0] == 200,
                       [server], timeout=60)  # fmt: skip
        config = yaml.safe_load((tmp_path / "state" / "prometheus" / "prometheus.yml").read_text())
        assert config["rule_files"] == [str(REPO.prometheus / "alerts.yml")]

        def targets() -> list[dict]:
            return requests.get(f"{settings.prometheus_url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]

        sup.wait_until("the scrape target", lambda: bool(targets()), [server], timeout=30)
        (target,) = targets()
        assert target["scrapeUrl"] == f"http://127.0.0.1:{api_port}/metrics"
        groups = requests.get(f"{settings.prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule["name"] for group in groups for rule in group["rules"]]
        assert "NoModelLoaded" in rules and "DatasetDrift" in rules and len(rules) == 10

        def alertmanagers() -> list[dict]:
            answer = requests.get(f"{settings.prometheus_url}/api/v1/alertmanagers", timeout=10).json()
            return answer["data"]["activeAlertmanagers"]

        sup.wait_until("Prometheus finding Alertmanager", lambda: bool(alertmanagers()), [server], timeout=30)
        assert alertmanagers() == [{"url": f"http://127.0.0.1:{manager_port}/api/v2/alerts"}]
    finally:
        assert sup.stop_all()
    assert not server.alive() and not manager.alive()
