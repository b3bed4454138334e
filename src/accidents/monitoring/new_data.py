"""Is there official data the last import did not have? The cheap check behind scheduled retraining.

    python -m accidents.monitoring.new_data        # prints one JSON object, exit 0 (1 on a failed check)

It compares the years `import_data` would import now (`data.years`, plus every complete later
year with `data.newer_years`) with the years data/raw/manifest.json says were imported:
- with BAAC_DATA_DIR, the mirror's complete year folders (a new `2022/` folder is a new year);
- online, the data.gouv.fr dataset API's resource list (a year published there is visible the
  day it appears, before anyone edits sources.py);
- offline without a mirror: nothing can be new.
Output: {"new_data": bool, "new_years": [...], "imported_years": [...], "available_years": [...],
"where": "...", "reason": "..."}; the Airflow check passes `reason` to the run it starts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from accidents.config import ENV_DATA_DIR, ENV_OFFLINE, load_params, paths
from accidents.data.sources import dataset_api_url, local_years, online_years
from accidents.pipeline.import_data import SOURCE_ACCIDENT_TABLE, years_to_import
from accidents.stage import read_json, run_stage


def imported_years() -> list[int]:
    manifest = paths().raw_manifest
    if not manifest.is_file():
        return []
    data = read_json(manifest)
    return [] if data.get("source") == "synthetic" else sorted(int(year) for year in data.get("years", []))


def available_years() -> tuple[list[int], str]:
    """Complete official years visible now, and where they were looked for."""
    local = os.environ.get(ENV_DATA_DIR)
    if local:
        return local_years(Path(local)), f"{ENV_DATA_DIR}={local}"
    if os.environ.get(ENV_OFFLINE) == "1":
        return [], f"nowhere ({ENV_OFFLINE}=1 and no {ENV_DATA_DIR})"
    return online_years(), f"data.gouv.fr dataset API {dataset_api_url()}"


def check(params: dict[str, Any]) -> dict[str, Any]:
    imported = imported_years()
    if params.get("source") == SOURCE_ACCIDENT_TABLE:
        return {"new_data": False, "new_years": [], "imported_years": imported, "available_years": [],
                "where": "data.source accident_table", "reason": "the seed's accident table never changes"}  # fmt: skip
    available, where = available_years()
    wanted = [year for year in years_to_import(params, available) if year in available]
    new = sorted(set(wanted) - set(imported))
    if new:
        reason = f"new official data: {', '.join(map(str, new))} in {where} (imported so far: {imported or 'none'})"
    else:
        reason = f"no new official year in {where} (imported: {imported or 'none'})"
    return {"new_data": bool(new), "new_years": new, "imported_years": imported, "available_years": available,
            "where": where, "reason": reason}  # fmt: skip


def main() -> None:
    print(json.dumps(check(load_params(paths().params)["data"])), flush=True)


if __name__ == "__main__":
    raise SystemExit(run_stage("new_data", main))
