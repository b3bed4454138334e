"""The new-data check: a new year folder in the mirror, or a new year listed by the data.gouv.fr
dataset API (a real HTTP server on 127.0.0.1), is new data; nothing else is."""

from __future__ import annotations

import functools
import json
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from accidents.data.sources import TABLES, online_years
from accidents.monitoring import new_data
from accidents.pipeline import import_data
from accidents.stage import write_json
from tests.pipeline.test_import_data import sample_mirror
from tests.support.project import REPO

DATA = {"source": "official_tables", "years": [2020, 2021], "newer_years": True, "allow_synthetic": False,
        "synthetic_rows": 100, "download": {"retries": 1, "backoff_seconds": 0.01, "timeout_seconds": 5}}  # fmt: skip


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder whose last import recorded 2020 and 2021."""
    root = tmp_path / "project"
    (root / "data" / "raw").mkdir(parents=True)
    (root / "params.yaml").write_bytes((REPO / "params.yaml").read_bytes())
    write_json(root / "data" / "raw" / "manifest.json", {"source": "local", "layout": "tables", "years": [2020, 2021]})
    for name in ("BAAC_DATA_DIR", "BAAC_OFFLINE", "BAAC_DATASET_API", "BAAC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACCIDENTS_PROJECT_DIR", str(root))
    return root


def test_a_year_added_to_the_mirror_is_new_data(project, baac_dir, tmp_path, monkeypatch):
    mirror = sample_mirror(baac_dir, tmp_path / "mirror", [2020, 2021])
    monkeypatch.setenv("BAAC_DATA_DIR", str(mirror))
    assert new_data.check(DATA)["new_data"] is False
    sample_mirror(baac_dir, mirror, [2022])  # the producer publishes 2022
    answer = new_data.check(DATA)
    assert (answer["new_data"], answer["new_years"], answer["imported_years"]) == (True, [2022], [2020, 2021])
    assert "2022" in answer["reason"] and str(mirror) in answer["reason"]
    assert new_data.check({**DATA, "newer_years": False})["new_data"] is False  # pinned years: nothing new
    # once imported, the year is no longer new
    manifest = import_data.import_data(DATA, project / "data" / "raw")
    write_json(project / "data" / "raw" / "manifest.json", manifest)
    assert manifest["years"] == [2020, 2021, 2022]
    assert new_data.check(DATA)["new_data"] is False


def test_the_cli_prints_one_json_answer(project, baac_dir, tmp_path):
    mirror = sample_mirror(baac_dir, tmp_path / "mirror", [2020, 2021, 2022])
    env = {"PATH": "/usr/bin:/bin", "ACCIDENTS_PROJECT_DIR": str(project), "BAAC_DATA_DIR": str(mirror)}
    result = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "accidents.monitoring.new_data"], env=env,
                            capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    assert json.loads(result.stdout)["new_years"] == [2022]


def test_offline_without_a_mirror_nothing_is_new(project, monkeypatch):
    monkeypatch.setenv("BAAC_OFFLINE", "1")
    assert new_data.check(DATA)["new_data"] is False


@pytest.fixture
def dataset_api(baac_dir, tmp_path):
    """The data.gouv.fr dataset API's answer (its real shape: a list of resources with title, id,
    filesize, checksum) and the files behind the ids, on a free loopback port."""
    root = tmp_path / "www"
    root.mkdir()
    resources = []
    for year in (2021, 2023):
        for table in TABLES:
            title = f"{'caract' if table == 'caracteristiques' else table}-{year}.csv"
            resource_id = f"id-{table}-{year}"
            (root / resource_id).write_bytes((baac_dir / "2021-raw-sample" / f"{table}-2021.csv").read_bytes())
            resources.append({"id": resource_id, "title": title, "filesize": None, "checksum": None})
    resources.append({"id": "id-partial", "title": "lieux-2024.csv"})  # a year not complete yet
    resources.append({"id": "id-other", "title": "vehicules-immatricules-baac-2009-2022.csv"})
    (root / "dataset.json").write_text(json.dumps({"id": "53698f4ca3a729239d2036df", "resources": resources}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_online_a_year_listed_by_the_dataset_api_is_new_and_importable(project, dataset_api, monkeypatch, tmp_path):
    monkeypatch.setenv("BAAC_DATASET_API", dataset_api + "dataset.json")
    monkeypatch.setenv("BAAC_BASE_URL", dataset_api)
    assert online_years() == [2021, 2023]
    answer = new_data.check(DATA)
    assert answer["new_years"] == [2023] and "data.gouv.fr dataset API" in answer["reason"]
    # 2023 is in no table of known resource ids: the importer takes its ids from the API
    manifest = import_data.import_data({**DATA, "years": [2023]}, tmp_path / "raw")
    assert manifest["years"] == [2023] and len(manifest["files"]) == 4
