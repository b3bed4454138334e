"""`make run PROMETHEUS=1`: the switch, its errors, and the real Prometheus it starts (the host's
Debian binary) scraping the API's port with the repo's rules, stopped with the stack."""

from __future__ import annotations

import pytest
import requests
import run_stack
import yaml
from stack_supervisor import ConfigurationError, Console, Supervisor

from accidents.config import PROMETHEUS_PORT, Paths
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
    same = run_stack.load_settings(tmp_path, environ={"PROMETHEUS": "1", "PROMETHEUS_PORT": "8000"})
    with pytest.raises(ConfigurationError, match="must differ"):
        run_stack.check_ports(same)


def test_the_stack_starts_a_real_prometheus_on_the_api(tmp_path):
    api_port, port = free_port(), free_port()
    environ = {"PROMETHEUS": "1", "PROMETHEUS_PORT": str(port), "API_PORT": str(api_port), "PATH": "/usr/bin:/bin"}
    settings = run_stack.load_settings(tmp_path, environ=environ)
    sup = Supervisor(tmp_path / "logs", Console(color=False))
    try:
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
        assert "NoModelLoaded" in rules and "DatasetDrift" in rules and len(rules) == 8
    finally:
        assert sup.stop_all()
    assert not server.alive()
