"""import_data: local mirror, real HTTP downloads (a server on 127.0.0.1), synthetic fallback."""

from __future__ import annotations

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from accidents.data.sources import RESOURCES, TABLES, Resource
from accidents.pipeline import import_data as stage
from accidents.pipeline.preprocess import read_official_table
from accidents.stage import PipelineError

PARAMS = {"years": [2021], "allow_synthetic": False, "synthetic_rows": 500,
          "download": {"retries": 2, "backoff_seconds": 0.01, "timeout_seconds": 5}}  # fmt: skip


@pytest.fixture
def file_server(baac_dir, tmp_path):
    """Serves the real 2021 sample under the data.gouv.fr resource ids, on a free loopback port."""
    root = tmp_path / "www"
    root.mkdir()
    for table, resource in RESOURCES[2021].items():
        (root / resource.resource_id).write_bytes((baac_dir / "2021-raw-sample" / f"{table}-2021.csv").read_bytes())
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", root
    server.shutdown()
    server.server_close()


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("BAAC_DATA_DIR", "BAAC_OFFLINE", "BAAC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def sample_mirror(baac_dir, folder, years):
    """A mirror with one year folder per year, each holding the real 65-accident sample files
    under that year's official names (2022's characteristics spelling included)."""
    spelling = {2022: "carcteristiques", 2023: "caract"}
    for year in years:
        year_dir = folder / str(year)
        year_dir.mkdir(parents=True)
        for table in TABLES:
            name = spelling.get(year, table) if table == "caracteristiques" else table
            sample = baac_dir / "2021-raw-sample" / f"{table}-2021.csv"
            (year_dir / f"{name}-{year}.csv").write_bytes(sample.read_bytes())
    return folder


def test_default_reads_the_year_folders_never_the_sample(baac_dir, tmp_path, clean_env):
    """The shared mirror holds the 65-accident sample under the same names as 2021/: only the
    year folder may be taken for the year."""
    clean_env.setenv("BAAC_DATA_DIR", str(baac_dir))
    manifest = stage.import_data(PARAMS, tmp_path / "raw")
    assert (manifest["source"], manifest["layout"], manifest["years"]) == ("local", "tables", [2021])
    copied = tmp_path / "raw" / "tables" / "2021" / "caracteristiques.csv"
    assert copied.read_bytes() == (baac_dir / "2021" / "carcteristiques-2021.csv").read_bytes()
    assert len(read_official_table(copied)) == 56518  # the whole year, not the 65-accident sample


def test_accident_table_is_an_explicit_source(baac_dir, tmp_path, clean_env):
    clean_env.setenv("BAAC_DATA_DIR", str(baac_dir))
    manifest = stage.import_data({**PARAMS, "source": "accident_table"}, tmp_path / "raw")
    assert (manifest["source"], manifest["layout"], manifest["data_source"]) == ("local", "accident_table",
                                                                                 "accident_table")  # fmt: skip
    assert manifest["files"]["accident-table/X_train.csv"] == (
        "aa48e7b8066afe5a4d62dc6d291e215542918f428ca98deeeaa4db746a9c722e"
    )
    clean_env.setenv("BAAC_DATA_DIR", str(baac_dir / "2021"))
    with pytest.raises(PipelineError, match="2021-accident-table"):
        stage.import_data({**PARAMS, "source": "accident_table"}, tmp_path / "raw2")


def test_local_official_tables(baac_dir, tmp_path, clean_env):
    clean_env.setenv("BAAC_DATA_DIR", str(sample_mirror(baac_dir, tmp_path / "mirror", [2021])))
    manifest = stage.import_data(PARAMS, tmp_path / "raw")
    assert manifest["layout"] == "tables" and len(manifest["files"]) == 4
    assert (tmp_path / "raw" / "tables" / "2021" / "usagers.csv").is_file()


def test_missing_local_year_is_a_clear_error(baac_dir, tmp_path, clean_env):
    clean_env.setenv("BAAC_DATA_DIR", str(sample_mirror(baac_dir, tmp_path / "mirror", [2021])))
    with pytest.raises(PipelineError, match="no complete 2019/ folder"):
        stage.import_data({**PARAMS, "years": [2019]}, tmp_path / "raw")


def test_newer_years_in_the_mirror_are_imported_and_recorded(baac_dir, tmp_path, clean_env):
    mirror = sample_mirror(baac_dir, tmp_path / "mirror", [2020, 2021, 2022])
    (mirror / "2023").mkdir()  # incomplete: not a year yet
    (mirror / "2023" / "lieux-2023.csv").write_text("x")
    clean_env.setenv("BAAC_DATA_DIR", str(mirror))
    assert stage.import_data({**PARAMS, "newer_years": False}, tmp_path / "raw")["years"] == [2021]
    manifest = stage.import_data({**PARAMS, "newer_years": True}, tmp_path / "raw")
    assert manifest["years"] == [2021, 2022]  # 2020 is older than data.years: not added
    assert sorted(path.name for path in (tmp_path / "raw" / "tables").iterdir()) == ["2021", "2022"]


def test_download_over_http(file_server, tmp_path, clean_env):
    base_url, _ = file_server
    clean_env.setenv("BAAC_BASE_URL", base_url)
    manifest = stage.import_data(PARAMS, tmp_path / "raw")
    assert (manifest["source"], manifest["layout"]) == ("download", "tables")
    assert len((tmp_path / "raw" / "tables" / "2021" / "lieux.csv").read_text().splitlines()) == 66


def test_download_checks_the_published_sha1(file_server, tmp_path):
    base_url, root = file_server
    resource_id = RESOURCES[2021]["lieux"].resource_id
    good = hashlib.sha1((root / resource_id).read_bytes()).hexdigest()  # noqa: S324
    stage.download_file(base_url + resource_id, tmp_path / "ok.csv", Resource(resource_id, sha1=good),
                        PARAMS["download"])  # fmt: skip
    with pytest.raises(PipelineError, match="sha1"):
        stage.download_file(base_url + resource_id, tmp_path / "bad.csv", Resource(resource_id, sha1="0" * 40),
                            PARAMS["download"])  # fmt: skip
    assert not (tmp_path / "bad.csv").exists() and not (tmp_path / "bad.csv.part").exists()


def test_download_failure_names_the_url(file_server, tmp_path):
    base_url, _ = file_server
    with pytest.raises(PipelineError, match=rf"{base_url}missing-id after 2 attempts"):
        stage.download_file(base_url + "missing-id", tmp_path / "x.csv", Resource("missing-id"), PARAMS["download"])


def test_no_network_without_fallback_fails(tmp_path, clean_env):
    clean_env.setenv("BAAC_BASE_URL", "http://127.0.0.1:9/")  # discard port: connection refused
    with pytest.raises(PipelineError, match="could not download"):
        stage.import_data(PARAMS, tmp_path / "raw")


def test_synthetic_fallback_is_labelled(tmp_path, clean_env, capsys):
    clean_env.setenv("BAAC_OFFLINE", "1")
    manifest = stage.import_data({**PARAMS, "allow_synthetic": True}, tmp_path / "raw")
    assert (manifest["source"], manifest["layout"]) == ("synthetic", "synthetic")
    assert "SYNTHETIC" in capsys.readouterr().err
    with pytest.raises(PipelineError, match="allow_synthetic is false"):
        stage.import_data(PARAMS, tmp_path / "raw2")
