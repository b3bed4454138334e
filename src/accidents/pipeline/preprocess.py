"""DVC stage `preprocess`: raw tables -> one row per accident (28 features + grav) -> splits.

Splits (`preprocess.split`): `temporal` (default) tests on the newest months, validates on the
months just before and trains on everything earlier; `random` is the seed's random share. The
seed's accident table keeps its own split. Every split keeps the accident id (`Num_Acc`) and
date beside the features, never as model inputs, for per-month evaluation and label joins.

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
from sklearn.model_selection import train_test_split

from accidents.config import load_params, paths
from accidents.data.sources import LAYOUT_ACCIDENT_TABLE, LAYOUT_TABLES, TABLES
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
from accidents.stage import PipelineError, log, read_json, run_stage, write_json

# Official injury codes (grav): 1 unharmed, 2 killed, 3 hospitalised, 4 slightly injured.
SEVERE_CODES = (2, 3)
# Rank used to keep one user per accident, as the seed ranked them (hospitalised, killed,
# slightly injured, unharmed): with it the joined rows match the seed's accident table.
SEVERITY_RANK = {3: 4, 2: 3, 4: 2, 1: 1}
MINUS_ONE_IS_MISSING = ("secu1", "catv", "obsm", "motor", "circ", "surf", "situ", "vma", "atm", "col")
ZERO_IS_MISSING = ("catv", "motor")
REQUIRED = ("catv", "vma", "secu1", "obsm", "atm")  # rows missing these are dropped (seed)
MODE_FILLED = ("surf", "circ", "col", "motor")  # filled with the train split's mode (seed)
ID_COLUMNS = ("Num_Acc", "id_vehicule", "num_veh")
# Columns of data/processed/{train,val,test}.csv: id and date (never model inputs), features, target.
SPLIT_COLUMNS = (ACCIDENT_ID, ACCIDENT_DATE, *FEATURE_NAMES, TARGET)


def read_official_table(path: Path) -> pd.DataFrame:
    """One official CSV as strings: `;`-separated, quoted, UTF-8 or Latin-1, values trimmed."""
    for encoding in ("utf-8", "latin-1"):
        try:
            frame = pd.read_csv(path, sep=";", dtype=str, encoding=encoding, keep_default_na=False)
            break
        except UnicodeDecodeError:
            continue
    frame.columns = [column.strip().strip('"').lstrip("\ufeff") for column in frame.columns]
    for column in frame.columns:
        frame[column] = frame[column].str.replace("\u00a0", " ").str.strip()
    for column in ID_COLUMNS:
        if column in frame.columns:  # "201 764" in one table, "201764" in another year: one key
            frame[column] = frame[column].str.replace(" ", "", regex=False)
    return frame


def numeric(values: pd.Series) -> pd.Series:
    """Codes and numbers: " -1" -> -1, "" / "N/A" -> NaN, decimal commas accepted."""
    return pd.to_numeric(values.str.replace(",", ".", regex=False), errors="coerce")


def parse_hour(values: pd.Series) -> pd.Series:
    """Hour from "07:32" (2019+) or "732" / "0732" (older files); invalid -> NaN."""
    text = values.fillna("").str.strip()
    with_colon = pd.to_numeric(text.str.split(":").str[0], errors="coerce")
    digits_only = text.where(text.str.fullmatch(r"\d{1,4}"))
    without_colon = pd.to_numeric(digits_only.str.zfill(4).str[:2], errors="coerce")
    hours = with_colon.where(text.str.contains(":"), without_colon)
    return hours.where(hours.between(0, 23))


def parse_coordinate(values: pd.Series, limit: float) -> pd.Series:
    """Decimal degrees from "48,86" or "48.86"; pre-2019 integer micro-degrees are scaled."""
    coordinate = numeric(values)
    scaled = coordinate.where(coordinate.abs() <= limit, coordinate / 100000)
    return scaled.where(scaled.abs() <= limit)


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
    for year_dir in sorted(path for path in (raw / "tables").iterdir() if path.is_dir()):
        tables = {table: read_official_table(year_dir / f"{table}.csv") for table in TABLES}
        joined = clean(join_year(tables))
        log.info("%s: %d accidents after joining and cleaning", year_dir.name, len(joined))
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


def month_start(day: pd.Timestamp, months_back: int) -> pd.Timestamp:
    return (day.to_period("M") - months_back).to_timestamp()


def temporal_bounds(dates: pd.Series, params: dict[str, Any]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(validation start, test start): explicit dates from params, else the newest months.

    Default: the test period is the last `test_months` calendar months of the data, validation
    the `val_months` before it; with 2020 + 2021: validation 2021-04..06, test 2021-07..12. A new
    year shifts both windows forward without an edit.
    """
    newest = pd.Timestamp(dates.max())
    test_start = pd.Timestamp(params["test_start"]) if params.get("test_start") else month_start(
        newest, int(params["test_months"]) - 1)  # fmt: skip
    val_start = pd.Timestamp(params["val_start"]) if params.get("val_start") else month_start(
        test_start, int(params["val_months"]))  # fmt: skip
    if not val_start < test_start:
        raise PipelineError(f"validation must start before the test period: {val_start.date()} >= {test_start.date()}")
    return val_start, test_start


def temporal_split(data: pd.DataFrame, params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Train on the past, tune on the period just before the test period, test on the newest."""
    dates = pd.to_datetime(data[ACCIDENT_DATE])
    val_start, test_start = temporal_bounds(dates, params)
    splits = {
        "train": data[dates < val_start],
        "val": data[(dates >= val_start) & (dates < test_start)],
        "test": data[dates >= test_start],
    }
    log.info("temporal split: train < %s <= validation < %s <= test", val_start.date(), test_start.date())
    for name, split in splits.items():
        if split.empty:
            raise PipelineError(
                f"temporal split: the {name} period is empty (data {dates.min().date()} .. {dates.max().date()}, "
                f"validation from {val_start.date()}, test from {test_start.date()})"
            )
    return splits


def random_split(data: pd.DataFrame, params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """The seed's split: a random `test_size` share is the test set."""
    train, test = train_test_split(data, test_size=params["test_size"], random_state=params["seed"])
    return {"train": train, "test": test}


def carve_validation(splits: dict[str, pd.DataFrame], params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """A stratified random validation share of train (random split and the seed's table)."""
    if "val" in splits:
        return splits
    train, val = train_test_split(
        splits["train"], test_size=params["val_size"], random_state=params["seed"], stratify=splits["train"][TARGET]
    )
    return {"train": train, "val": val, "test": splits["test"]}


def subsample(splits: dict[str, pd.DataFrame], max_rows: int, seed: int) -> dict[str, pd.DataFrame]:
    """About `max_rows` rows in all, each split keeping its share (fast smoke runs and tests)."""
    total = sum(len(split) for split in splits.values())
    return {
        name: split.sample(n=min(len(split), max(50, int(max_rows * len(split) / total))), random_state=seed)
        for name, split in splits.items()
    }


SPLITS = ("temporal", "random")


def make_splits(raw: Path, params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    layout = read_json(raw / "manifest.json")["layout"]
    if layout == LAYOUT_ACCIDENT_TABLE:
        splits = load_accident_table(raw)
    else:
        data = load_tables_layout(raw) if layout == LAYOUT_TABLES else load_synthetic(raw)
        if params["split"] not in SPLITS:
            raise PipelineError(f"preprocess.split must be one of {SPLITS}, got {params['split']!r}")
        splits = (temporal_split if params["split"] == "temporal" else random_split)(data, params)
    if params.get("max_rows"):
        splits = subsample(splits, int(params["max_rows"]), params["seed"])
    return fill_and_drop(carve_validation(splits, params))


def main() -> None:
    project = paths()
    params = load_params(project.params)["preprocess"]
    splits = make_splits(project.raw, params)
    project.processed.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"source": read_json(project.raw_manifest)["source"]}
    for name, split in splits.items():
        split = split.sort_values([ACCIDENT_DATE, ACCIDENT_ID], kind="stable")
        split[[*SPLIT_COLUMNS]].to_csv(project.split(name), index=False)
        summary[name] = {
            "rows": len(split),
            "positive_rate": round(float(split[TARGET].mean()), 4),
            "first_date": str(split[ACCIDENT_DATE].min()),
            "last_date": str(split[ACCIDENT_DATE].max()),
        }
        log.info("%s: %d rows, %.1f %% severe", name, len(split), 100 * split[TARGET].mean())
    write_json(project.processed / "summary.json", summary)


if __name__ == "__main__":
    raise SystemExit(run_stage("preprocess", main))
