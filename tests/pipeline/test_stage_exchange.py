"""accidents.stack.stage_exchange: the S3 layout of a run's state, and which outputs it must carry
(the ones DVC does not cache). The S3 round trip itself runs in `make scale-test` (tests/scale)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from accidents.stack.stage_exchange import main, run_prefix, uncached_outputs

DVC = Path(sys.executable).with_name("dvc")


def test_run_prefix_is_key_safe():
    bucket, prefix = run_prefix("s3://dvc/runs", "manual__2026-12-02T04:56:45.368119+00:00")
    assert bucket == "dvc"
    assert prefix == "runs/manual__2026-12-02T04_56_45.368119_00_00/"
    assert run_prefix("s3://bucket", "r1") == ("bucket", "r1/")


@pytest.mark.parametrize("url", ["/srv/dvc-remote", "http://s3/dvc", "s3:///nobucket"])
def test_run_prefix_refuses_other_urls(url):
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        run_prefix(url, "r1")


def test_uncached_outputs_are_the_ones_dvc_does_not_cache(tmp_path):
    subprocess.run([str(DVC), "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  make:\n"
        "    cmd: 'true'\n"
        "    outs:\n"
        "      - cached.bin\n"
        "      - plain.zip:\n"
        "          cache: false\n"
        "      - reports:\n"
        "          cache: false\n"
        "    metrics:\n"
        "      - metrics.json:\n"
        "          cache: false\n"
    )
    for name in ("cached.bin", "plain.zip", "metrics.json", "reports/a.csv", "reports/sub/b.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    found = sorted(path.relative_to(tmp_path).as_posix() for path in uncached_outputs(tmp_path))
    assert found == ["metrics.json", "plain.zip", "reports/a.csv", "reports/sub/b.png"]


def test_cli_needs_the_exchange_url(monkeypatch, capsys):
    monkeypatch.delenv("ACCIDENTS_STAGE_EXCHANGE", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["pull", "run-1"])
    assert exit_info.value.code == 2
    assert "ACCIDENTS_STAGE_EXCHANGE is not set" in capsys.readouterr().err
