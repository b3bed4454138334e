"""DVC stage `preprocess`: raw tables -> one row per accident (28 features + grav) -> splits.

Splits (`preprocess.split`): `temporal` (default) tests on the newest months, validates on the
months just before and trains on everything earlier; `random` is the seed's random share. The
seed's accident table keeps its own split. Every split keeps the accident id (`Num_Acc`) and
date beside the features, never as model inputs, for per-month evaluation and label joins.

The report-time model's rows (95 features of every user and vehicle: accidents.report_time.dataset,
the code a request's reports go through) are split the same way into data/processed/report_time/,
unless `pipeline.models` leaves that model out or data/raw has no official tables (skipped.json
says which). Measured for 2020 + 2021: about 30 s more.

Follows the seed's make_dataset semantics (users x vehicles inner join, most severely injured
user per accident, nb_victim / nb_vehicules, grav mapping, catv and atm grouping, -1/0 -> NaN,
Corsica 2A/2B -> 201/202, NaN rows dropped on catv/vma/secu1/obsm/atm, train modes fill
surf/circ/col/motor) and fixes its bugs: ages outside [0, 120] really become NaN, hours are
parsed from both "HH:MM" and "HHMM", coordinates from decimal commas or points, and any value
outside the feature contract is treated as missing instead of reaching the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from accidents.config import Paths, load_params, paths
from accidents.data.official import (  # noqa: F401 - also read from here by the seed's tests and data.labelled
    SEVERE_CODES,
    SEVERITY_RANK,
    numeric,
    parse_coordinate,
    parse_hour,
    raw_years,
    read_official_table,
)
from accidents.data.sources import LAYOUT_ACCIDENT_TABLE, LAYOUT_TABLES
from accidents.data.splits import SPLITS, shrink_and_validate, split_accidents, temporal_split  # noqa: F401
from accidents.features import (
    ACCIDENT_DATE,
    ACCIDENT_ID,
    ATM_GROUPS,
    CATV_GROUPS,
    FEATURE_NAMES,
    FEATURES,
    TARGET,
    Feature,
)
from accidents.report_time import dataset
from accidents.stage import PipelineError, log, read_json, run_report_time, run_stage, selected, skip, write_json

MINUS_ONE_IS_MISSING = ("secu1", "catv", "obsm", "motor", "circ", "surf", "situ", "vma", "atm", "col")
ZERO_IS_MISSING = ("catv", "motor")
REQUIRED = ("catv", "vma", "secu1", "obsm", "atm")  # rows missing these are dropped (seed)
MODE_FILLED = ("surf", "circ", "col", "motor")  # filled with the train split's mode (seed)

# Columns of data/processed/{train,val,test}.csv: id and date (never model inputs), features, target.
SPLIT_COLUMNS = (ACCIDENT_ID, ACCIDENT_DATE, *FEATURE_NAMES, TARGET)


def department_code(values: pd.Series) -> pd.Series:
    """INSEE codes with Corsica's 2A/2B prefixes as 201/202 (seed convention)."""
    replaced = values.str.upper().str.replace(r"^2A", "201", regex=True).str.replace(r"^2B", "202", regex=True)
    return pd.to_numeric(replaced, errors="coerce")


def join_year(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The four tables of one year -> one row per accident with features and target."""
    users, vehicles = tables["usagers"].copy(), tables["vehicules"].copy()
    places, caract = tables["lieux"].copy(), tables["caracteristiques"].copy()

    nb_victim = users.groupby("Num_Acc").size().rename("nb_victim")
    nb_vehicules = vehicles.groupby("Num_Acc").size().rename("nb_vehicules")

    users["year_acc"] = pd.to_numeric(users["Num_Acc"].str[:4], errors="coerce")
    users["victim_age"] = users["year_acc"] - numeric(users["an_nais"])
    users["victim_age"] = users["victim_age"].where(users["victim_age"].between(0, 120))
    users["grav_code"] = numeric(users["grav"])
    users["rank"] = users["grav_code"].map(SEVERITY_RANK).fillna(0)
    for column in ("place", "catu", "sexe", "secu1"):
        users[column] = numeric(users[column])

    vehicles["catv"] = numeric(vehicles["catv"]).map(CATV_GROUPS)  # unknown codes -> NaN
    for column in ("obsm", "motor"):
        vehicles[column] = numeric(vehicles[column])

    joined = users.merge(vehicles[["Num_Acc", "num_veh", "id_vehicule", "catv", "obsm", "motor"]],
                         on=["Num_Acc", "num_veh", "id_vehicule"], how="inner")  # fmt: skip
    # Stable sort: among equally injured users the first listed is kept, run after run (the
    # seed's unstable sort picked one of them at random).
    joined = joined.sort_values("rank", ascending=False, kind="stable").drop_duplicates("Num_Acc", keep="first")

    places = places.drop_duplicates("Num_Acc", keep="first")  # one place per accident, no row explosion
    for column in ("catr", "circ", "surf", "situ", "vma"):
        places[column] = numeric(places[column])
    joined = joined.merge(places[["Num_Acc", "catr", "circ", "surf", "situ", "vma"]], on="Num_Acc", how="left")

    caract = caract.drop_duplicates("Num_Acc", keep="first")
    for column in ("jour", "mois", "lum", "agg", "int", "atm", "col"):
        caract[column] = numeric(caract[column])
    caract["atm"] = caract["atm"].map(ATM_GROUPS)  # -1 and unknown -> NaN
    caract["hour"] = parse_hour(caract["hrmn"])
    caract["lat"] = parse_coordinate(caract["lat"], 90)
    caract["long"] = parse_coordinate(caract["long"], 180)
    caract["dep"] = department_code(caract["dep"])
    caract["com"] = department_code(caract["com"])
    caract = caract.rename(columns={"agg": "agg_"})
    caract_columns = ["Num_Acc", "jour", "mois", "lum", "dep", "com", "agg_", "int", "atm", "col", "lat", "long",
                      "hour"]  # fmt: skip
    joined = joined.merge(caract[caract_columns], on="Num_Acc", how="left")
    joined = joined.join(nb_victim, on="Num_Acc").join(nb_vehicules, on="Num_Acc")

    joined[TARGET] = joined["grav_code"].isin(SEVERE_CODES).astype(int)
    joined = joined[joined["grav_code"].isin(SEVERITY_RANK)]  # drop accidents with no known injury code
    joined[ACCIDENT_DATE] = accident_dates(joined)
    return joined[[ACCIDENT_ID, ACCIDENT_DATE, *FEATURE_NAMES, TARGET]]


def accident_dates(frame: pd.DataFrame) -> pd.Series:
    """ISO dates (YYYY-MM-DD) from year_acc / mois / jour; NaN where they make no date."""
    parts = pd.DataFrame({"year": frame["year_acc"], "month": frame["mois"], "day": frame["jour"]})
    valid = parts.notna().all(axis=1)
    dates = pd.Series(np.nan, index=frame.index, dtype=object)
    if valid.any():
        parsed = pd.to_datetime(parts[valid].astype(int), errors="coerce")
        dates[valid] = parsed.dt.strftime("%Y-%m-%d").where(parsed.notna())
    return dates


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing codes -> NaN, out-of-contract values -> NaN, drop rows missing required features."""
    frame = frame.copy()
    for column in MINUS_ONE_IS_MISSING:
        frame[column] = frame[column].replace(-1, np.nan)
    for column in ZERO_IS_MISSING:
        frame[column] = frame[column].replace(0, np.nan)
    for feature in FEATURES:
        values = frame[feature.name].astype(float)
        frame[feature.name] = values.where(values.isna() | within_domain(feature, values))
    before = len(frame)
    frame = frame.dropna(subset=list(REQUIRED))
    log.info("dropped %d of %d accidents missing one of %s", before - len(frame), before, ", ".join(REQUIRED))
    return frame


def within_domain(feature: Feature, values: pd.Series) -> pd.Series:
    """Vectorized `feature.violation(value) is None` for present values (NaN rows: False)."""
    return pd.Series(feature.accepts(values.to_numpy(dtype=float)), index=values.index)


def fill_and_drop(splits: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Fill MODE_FILLED with the train split's modes; drop rows still missing required values."""
    modes = splits["train"][list(MODE_FILLED)].mode().iloc[0]
    required = [feature.name for feature in FEATURES if not feature.nullable]
    result = {}
    for name, split in splits.items():
        split = split.fillna({column: modes[column] for column in MODE_FILLED})
        missing = split[required].isna().any(axis=1)
        if missing.any():
            log.info("%s: dropped %d rows with missing non-nullable features", name, int(missing.sum()))
        result[name] = split[~missing].reset_index(drop=True)
    return result


def load_tables_layout(raw: Path) -> pd.DataFrame:
    frames = []
    for year, tables in raw_years(raw):
        joined = clean(join_year(tables))
        log.info("%s: %d accidents after joining and cleaning", year, len(joined))
        frames.append(joined)
    return pd.concat(frames, ignore_index=True)


def load_accident_table(raw: Path) -> dict[str, pd.DataFrame]:
    """The seed's joined table keeps its own split: X_test/y_test stays the held-out set. It has
    no accident ids (left empty); dates come from its year_acc / mois / jour."""
    folder = raw / "accident-table"
    splits = {}
    for name in ("train", "test"):
        features = pd.read_csv(folder / f"X_{name}.csv")
        target = pd.read_csv(folder / f"y_{name}.csv")
        if list(features.columns) != list(FEATURE_NAMES):
            raise PipelineError(f"X_{name}.csv columns differ from the feature contract: {list(features.columns)}")
        features[TARGET] = target[TARGET].to_numpy()
        features.insert(0, ACCIDENT_ID, "")
        features.insert(1, ACCIDENT_DATE, accident_dates(features))
        splits[name] = clean(features)
    return splits


def load_synthetic(raw: Path) -> pd.DataFrame:
    return clean(pd.read_csv(raw / "synthetic" / "accidents.csv", dtype={ACCIDENT_ID: str}))


def make_splits(raw: Path, params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    layout = read_json(raw / "manifest.json")["layout"]
    if layout == LAYOUT_ACCIDENT_TABLE:
        return fill_and_drop(shrink_and_validate(load_accident_table(raw), params))
    data = load_tables_layout(raw) if layout == LAYOUT_TABLES else load_synthetic(raw)
    return fill_and_drop(split_accidents(data, params))


def write_splits(splits: dict[str, pd.DataFrame], folder: Path, columns: tuple[str, ...], suffix: str) -> None:
    """Each split sorted by date and id, `columns` only, plus summary.json (rows, severe share, period)."""
    folder.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"source": read_json(paths().raw_manifest)["source"]}
    for name, split in splits.items():
        split = split.sort_values([ACCIDENT_DATE, ACCIDENT_ID], kind="stable")[[*columns]]
        target = folder / f"{name}{suffix}"
        split.to_parquet(target, index=False) if suffix == ".parquet" else split.to_csv(target, index=False)
        summary[name] = {
            "rows": len(split),
            "positive_rate": round(float(split[TARGET].mean()), 4),
            "first_date": str(split[ACCIDENT_DATE].min()),
            "last_date": str(split[ACCIDENT_DATE].max()),
        }
        log.info("%s/%s: %d rows, %.1f %% severe", folder.name, name, len(split), 100 * split[TARGET].mean())
    write_json(folder / "summary.json", summary)


def report_time_splits(project: Paths, params: dict[str, Any]) -> None:
    """The report-time model's rows (accidents.report_time.dataset: the features a request gets),
    split as the seed's; skipped when `pipeline.models` leaves the model out or data/raw has no
    official tables (the seed's joined table, synthetic data)."""
    folder = project.report_time.processed

    def build() -> None:
        if not dataset.has_tables(project.raw):
            return skip(folder, "data/raw has no official tables (users and vehicles) to build its features from")
        write_splits(dataset.make_splits(project.raw, params["preprocess"]), folder, dataset.SPLIT_COLUMNS, ".parquet")

    run_report_time(params, folder, None, build)


def main() -> None:
    project = paths()
    params = load_params(project.params)
    selected(params)  # a wrong pipeline.models fails before any work
    splits = make_splits(project.raw, params["preprocess"])
    write_splits(splits, project.processed, SPLIT_COLUMNS, ".csv")
    report_time_splits(project, params)


if __name__ == "__main__":
    raise SystemExit(run_stage("preprocess", main))
