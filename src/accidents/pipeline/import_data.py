"""DVC stage `import_data`: get the official BAAC tables for `data.years` into data/raw/.

`data.source: official_tables` (default): the four official tables of each year, from a local
mirror's year folders (env BAAC_DATA_DIR: `<dir>/2020/`, `<dir>/2021/`...; never a sample
folder holding the same file names), else data.gouv.fr (unless BAAC_OFFLINE=1), else, if
`data.allow_synthetic`, synthetic demo data with a loud warning. Never synthetic (the stage fails
instead, with the reason): in production mode (ENVIRONMENT=production), nor in a run that nobody
started from a shell (the DAG and POST /retrain set ACCIDENTS_RUN_REASON) while the registry's
champion is real or cannot be checked: a data.gouv.fr outage during a scheduled run must not
train a fake model (issue #23; `evaluate` also never promotes one over a real champion). With `data.newer_years`,
every complete year later than `data.years` found there is imported too (the new-data check,
`accidents.monitoring.new_data`, starts a run when one appears). `data.source: accident_table`: the seed's
joined 2021 table from the mirror, its own train/test split kept (compares with the seed).
data/raw/manifest.json records what was used, including the years actually imported; the
model trained on it carries the same labels.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import requests

from accidents.config import (
    CHAMPION_ALIAS,
    ENV_BASE_URL,
    ENV_DATA_DIR,
    ENV_OFFLINE,
    ENV_RUN_REASON,
    MODEL_NAME,
    load_params,
    paths,
    production_mode,
    tracking_uri,
)
from accidents.data import synthetic
from accidents.data.sources import (
    ACCIDENT_TABLE_FILES,
    ACCIDENT_TABLE_FOLDER,
    DEFAULT_BASE_URL,
    LAYOUT_ACCIDENT_TABLE,
    LAYOUT_SYNTHETIC,
    LAYOUT_TABLES,
    RESOURCES,
    TABLES,
    Resource,
    find_accident_table,
    find_year_tables,
    local_years,
    online_resources,
    online_years,
)
from accidents.stage import PipelineError, log, run_stage, warn_loudly, write_json

SOURCE_OFFICIAL = "official_tables"  # the four official tables of each year (default)
SOURCE_ACCIDENT_TABLE = "accident_table"  # the seed's joined 2021 table, with its own split
SOURCES = (SOURCE_OFFICIAL, SOURCE_ACCIDENT_TABLE)
# registry.TAG_DATA_SOURCE (not imported: the registry module would make every model change a
# dependency of this stage, and a rerun of it a download); a test keeps the two equal.
DATA_SOURCE_TAG = "data_source"
SYNTHETIC = "synthetic"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_accident_table(folder: Path, out: Path) -> dict[str, Any]:
    """Copy the seed's joined 2021 accident table (`data.source: accident_table`)."""
    table_dir = find_accident_table(folder) if folder.is_dir() else None
    if table_dir is None:
        raise PipelineError(
            f"data.source is accident_table but {ENV_DATA_DIR}={folder} holds no {ACCIDENT_TABLE_FOLDER}/ "
            f"({', '.join(ACCIDENT_TABLE_FILES)})"
        )
    target = out / "accident-table"
    target.mkdir(parents=True)
    for name in ACCIDENT_TABLE_FILES:
        shutil.copyfile(table_dir / name, target / name)
    log.info("using the seed's joined 2021 accident table in %s (its train/test split is kept)", table_dir)
    return {"source": "local", "layout": LAYOUT_ACCIDENT_TABLE, "origin": str(table_dir), "years": [2021]}


def import_local(folder: Path, years: list[int], out: Path) -> dict[str, Any]:
    """Copy the official tables of `years` from the mirror's year folders `folder/<year>/`."""
    if not folder.is_dir():
        raise PipelineError(f"{ENV_DATA_DIR}={folder} is not a folder")
    for year in years:
        found = find_year_tables(folder, year)
        if found is None:
            raise PipelineError(
                f"{ENV_DATA_DIR}={folder} has no complete {year}/ folder with the four official {year} tables "
                f"({', '.join(TABLES)}-{year}.csv; caracteristiques may be spelt carcteristiques or caract)"
            )
        target = out / "tables" / str(year)
        target.mkdir(parents=True)
        for table, source in found.items():
            shutil.copyfile(source, target / f"{table}.csv")
            log.info("%s %s <- %s", year, table, source)
    return {"layout": LAYOUT_TABLES, "origin": str(folder)}


def years_to_import(params: dict[str, Any], available: list[int]) -> list[int]:
    """`data.years`, plus every later year `available` when `data.newer_years` is on."""
    years = sorted({int(year) for year in params["years"]})
    if params.get("newer_years"):
        years = sorted({*years, *(year for year in available if year > max(years))})
    return years


def download_file(url: str, dest: Path, resource: Resource, settings: dict[str, Any]) -> None:
    """Download with retries and exponential backoff, progress output and size/sha1 checks."""
    retries = int(settings["retries"])
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            _download_once(url, dest, resource, float(settings["timeout_seconds"]))
            return
        except (requests.RequestException, OSError) as error:
            last_error = error
            if attempt < retries:
                delay = float(settings["backoff_seconds"]) * 2 ** (attempt - 1)
                log.warning("download of %s failed (%s); retry %d/%d in %.0f s", url, error, attempt, retries, delay)
                time.sleep(delay)
    raise PipelineError(f"could not download {url} after {retries} attempts: {last_error}")


def _download_once(url: str, dest: Path, resource: Resource, timeout: float) -> None:
    partial = dest.with_name(dest.name + ".part")
    digest = hashlib.sha1()  # noqa: S324 - the producer publishes sha1; integrity check, not security
    received = 0
    next_report = time.monotonic()
    with requests.get(url, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        total = int(response.headers.get("content-length") or 0) or resource.size
        with open(partial, "wb") as out:
            for chunk in response.iter_content(chunk_size=1 << 20):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if time.monotonic() >= next_report:
                    share = f" ({100 * received / total:.0f} %)" if total else ""
                    log.info("  %s: %.1f MB%s", dest.name, received / 1e6, share)
                    next_report = time.monotonic() + 5
    if resource.size is not None and received != resource.size:
        partial.unlink(missing_ok=True)
        raise PipelineError(f"{url}: got {received} bytes, the published size is {resource.size}")
    if resource.sha1 is not None and digest.hexdigest() != resource.sha1:
        partial.unlink(missing_ok=True)
        raise PipelineError(f"{url}: sha1 {digest.hexdigest()} differs from the published {resource.sha1}")
    os.replace(partial, dest)
    log.info("  %s: %.1f MB, verified", dest.name, received / 1e6)


def import_online(years: list[int], out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    base = os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    unknown = [year for year in years if year not in RESOURCES]
    published = online_resources(float(settings["timeout_seconds"])) if unknown else {}
    for year in years:
        resources = RESOURCES.get(year) or published.get(year)
        if resources is None:
            raise PipelineError(f"no data.gouv.fr resources for {year} (known: {sorted({*RESOURCES, *published})})")
        target = out / "tables" / str(year)
        target.mkdir(parents=True)
        for table, resource in resources.items():
            url = base.rstrip("/") + "/" + resource.resource_id
            log.info("downloading %s %s from %s", year, table, url)
            download_file(url, target / f"{table}.csv", resource, settings)
    return {"layout": LAYOUT_TABLES, "origin": base}


def import_data(params: dict[str, Any], out: Path) -> dict[str, Any]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    local = os.environ.get(ENV_DATA_DIR)
    source = params.get("source", SOURCE_OFFICIAL)
    if source not in SOURCES:
        raise PipelineError(f"data.source must be one of {SOURCES}, got {source!r}")
    if source == SOURCE_ACCIDENT_TABLE:
        if not local:
            raise PipelineError(f"data.source is accident_table: set {ENV_DATA_DIR} to the mirror holding it")
        manifest = import_accident_table(Path(local), out)
    elif local:
        years = years_to_import(params, local_years(Path(local)))
        manifest = {"source": "local", **import_local(Path(local), years, out), "years": years}
    elif os.environ.get(ENV_OFFLINE) != "1":
        try:
            years = years_to_import(params, online_years() if params.get("newer_years") else [])
            manifest = {"source": "download", **import_online(years, out, params["download"]), "years": years}
        except PipelineError as error:
            manifest = _fallback(out, params, reason=str(error))
    else:
        manifest = _fallback(out, params, reason=f"{ENV_OFFLINE}=1 and no {ENV_DATA_DIR}")
    manifest["data_source"] = source if manifest["source"] != SYNTHETIC else SYNTHETIC
    manifest["files"] = {str(path.relative_to(out)): sha256_of(path) for path in sorted(out.rglob("*.csv"))}
    return manifest


def _fallback(out: Path, params: dict[str, Any], reason: str) -> dict[str, Any]:
    """Synthetic data when no real data could be had and nothing forbids it; else fail with both reasons."""
    refusal = synthetic_refusal(params)
    if refusal is not None:
        raise PipelineError(
            f"no real data ({reason}) and no synthetic fallback: {refusal}. "
            f"Set {ENV_DATA_DIR} to a local copy of the BAAC files, or restore the network"
        )
    return _synthetic(out, params, reason)


def synthetic_refusal(params: dict[str, Any]) -> str | None:
    """Why this run must not fall back to synthetic data, or None when it may."""
    if not params["allow_synthetic"]:
        return "data.allow_synthetic is false"
    if production_mode():
        return "ENVIRONMENT=production never trains on synthetic data"
    reason = os.environ.get(ENV_RUN_REASON)
    if not reason:  # a shell run: a person reads the warning (and evaluate never promotes it over a real champion)
        return None
    champion = real_champion(tracking_uri())
    if champion is None:
        return None
    return f"this run ({ENV_RUN_REASON}={reason!r}, not a shell run) must not replace {champion} with a synthetic model"


def real_champion(uri: str) -> str | None:
    """'the real champion (version N)' when the registry's champion was not trained on synthetic data,
    None when there is no champion or it is synthetic. MLflow's REST API, a short timeout (its client
    retries for minutes); an unreachable registry counts as a real champion: it cannot be ruled out."""
    from mlflow.utils.credentials import read_mlflow_creds  # only here: the fallback path of a DAG run

    creds = read_mlflow_creds()  # MLflow's own login (env or ~/.mlflow/credentials): basic-auth registries
    auth = (creds.username, creds.password) if creds.username and creds.password else None
    url = uri.rstrip("/") + "/api/2.0/mlflow/registered-models/alias"
    try:
        params = {"name": MODEL_NAME, "alias": CHAMPION_ALIAS}
        response = requests.get(url, params=params, auth=auth, timeout=10)
    except requests.RequestException as error:
        return f"the registry's champion (MLflow at {uri} unreachable, so it may be real: {error})"
    if no_such_alias(response):
        return None
    if not response.ok:
        return f"the registry's champion (MLflow at {uri} answered {response.status_code}, so it may be real)"
    version = response.json().get("model_version") or {}
    tags = {tag.get("key"): tag.get("value") for tag in version.get("tags") or []}
    if tags.get(DATA_SOURCE_TAG) == SYNTHETIC:
        return None
    return f"the real champion (version {version.get('version')}, data_source {tags.get(DATA_SOURCE_TAG, 'unknown')})"


def no_such_alias(response: requests.Response) -> bool:
    """MLflow's answer when there is no champion: 404 when the registered model does not exist,
    400 "alias ... not found" when it exists without the alias (MLflow 3.17)."""
    if response.status_code == 404:
        return True
    if response.status_code != 400:
        return False
    try:
        message = str(response.json().get("message", ""))
    except ValueError:
        return False
    return "not found" in message.lower()


def _synthetic(out: Path, params: dict[str, Any], reason: str) -> dict[str, Any]:
    warn_loudly(
        f"NO REAL DATA ({reason}).\nFalling back to SYNTHETIC demo data: the model trained on it is "
        "tagged data_source=synthetic and must not be used for real decisions.\n"
        f"Set {ENV_DATA_DIR} to a local copy of the BAAC files, or allow downloads."
    )
    target = out / "synthetic"
    target.mkdir(parents=True)
    synthetic.generate(int(params["synthetic_rows"]), seed=42).to_csv(target / "accidents.csv", index=False)
    return {"source": SYNTHETIC, "layout": LAYOUT_SYNTHETIC, "origin": reason, "years": [synthetic.YEAR]}


def main() -> None:
    project = paths()
    manifest = import_data(load_params(project.params)["data"], project.raw)
    write_json(project.raw_manifest, manifest)
    log.info("imported %d files (%s, %s)", len(manifest["files"]), manifest["source"], manifest["layout"])


if __name__ == "__main__":
    raise SystemExit(run_stage("import_data", main))
