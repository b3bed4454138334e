"""DVC stage `preprocess`: raw tables -> one row per accident (28 features + grav) -> splits.

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
from accidents.features import ATM_GROUPS, CATV_GROUPS, FEATURE_NAMES, FEATURES, TARGET
from accidents.import_data import LAYOUT_ACCIDENT_TABLE, LAYOUT_SYNTHETIC, LAYOUT_TABLES
from accidents.sources import TABLES
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
    return joined[["Num_Acc", *FEATURE_NAMES, TARGET]]


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing codes -> NaN, out-of-contract values -> NaN, drop rows missing required features."""
    frame = frame.copy()
    for column in MINUS_ONE_IS_MISSING:
        frame[column] = frame[column].replace(-1, np.nan)
    for column in ZERO_IS_MISSING:
        frame[column] = frame[column].replace(0, np.nan)
    for feature in FEATURES:
        values = frame[feature.name].astype(float)
        valid = values.map(lambda value, f=feature: pd.isna(value) or f.violation(float(value)) is None)
        frame[feature.name] = values.where(valid)
    before = len(frame)
    frame = frame.dropna(subset=list(REQUIRED))
    log.info("dropped %d of %d accidents missing one of %s", before - len(frame), before, ", ".join(REQUIRED))
    return frame


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


def load_tables_layout(raw: Path, params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    years = sorted(path for path in (raw / "tables").iterdir() if path.is_dir())
    frames = []
    for year_dir in years:
        tables = {table: read_official_table(year_dir / f"{table}.csv") for table in TABLES}
        joined = clean(join_year(tables))
        log.info("%s: %d accidents after joining and cleaning", year_dir.name, len(joined))
        frames.append(joined)
    data = pd.concat(frames, ignore_index=True).drop(columns="Num_Acc")
    train, test = train_test_split(data, test_size=params["test_size"], random_state=params["seed"])
    return {"train": train, "test": test}


def load_accident_table(raw: Path) -> dict[str, pd.DataFrame]:
    """The joined table keeps its own split: X_test/y_test stays the held-out set."""
    folder = raw / "accident-table"
    splits = {}
    for name in ("train", "test"):
        features = pd.read_csv(folder / f"X_{name}.csv")
        target = pd.read_csv(folder / f"y_{name}.csv")
        if list(features.columns) != list(FEATURE_NAMES):
            raise PipelineError(f"X_{name}.csv columns differ from the feature contract: {list(features.columns)}")
        features[TARGET] = target[TARGET].to_numpy()
        splits[name] = clean(features)
    return splits


def load_synthetic(raw: Path, params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    data = clean(pd.read_csv(raw / "synthetic" / "accidents.csv"))
    train, test = train_test_split(data, test_size=params["test_size"], random_state=params["seed"])
    return {"train": train, "test": test}


def make_splits(raw: Path, params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    layout = read_json(raw / "manifest.json")["layout"]
    loaders = {
        LAYOUT_TABLES: lambda: load_tables_layout(raw, params),
        LAYOUT_ACCIDENT_TABLE: lambda: load_accident_table(raw),
        LAYOUT_SYNTHETIC: lambda: load_synthetic(raw, params),
    }
    splits = loaders[layout]()
    if params.get("max_rows"):
        total = sum(len(split) for split in splits.values())
        splits = {
            name: split.sample(n=min(len(split), max(50, int(params["max_rows"] * len(split) / total))),
                               random_state=params["seed"])
            for name, split in splits.items()
        }  # fmt: skip
    train, val = train_test_split(
        splits["train"], test_size=params["val_size"], random_state=params["seed"], stratify=splits["train"][TARGET]
    )
    return fill_and_drop({"train": train, "val": val, "test": splits["test"]})


def main() -> None:
    project = paths()
    params = load_params(project.params)["preprocess"]
    splits = make_splits(project.raw, params)
    project.processed.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"source": read_json(project.raw_manifest)["source"]}
    for name, split in splits.items():
        split[[*FEATURE_NAMES, TARGET]].to_csv(project.split(name), index=False)
        summary[name] = {"rows": len(split), "positive_rate": round(float(split[TARGET].mean()), 4)}
        log.info("%s: %d rows, %.1f %% severe", name, len(split), 100 * split[TARGET].mean())
    write_json(project.processed / "summary.json", summary)


if __name__ == "__main__":
    raise SystemExit(run_stage("preprocess", main))
