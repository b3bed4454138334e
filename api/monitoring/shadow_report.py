"""The shadow evidence per challenger version, read from the prediction log's store: agreement and
positive rates over every logged shadow row (SQL aggregates, no pandas), and the label job's
realized AUC/F1 of challenger and champion on the same labelled shadow rows (accidents.monitoring.realized).
What GET /monitoring/shadow answers and what POST /model/promote judges by. Per model: the seed's
shadow (beside /predict) by default, `model="report_time"` for /v2/predict's (both number their
versions from 1, so a pair of one is never the other's). The label job grades both models' pairs,
each stored under its model (`realized_performance.model`), and only that model's grades are read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine

from accidents.store.prediction_log import SEED_MODEL, predictions, realized

REALIZED_FIELDS = ("roc_auc", "f1", "precision", "recall", "rows_labelled", "rows_unlabelled", "computed_at")


def shadow_report(engine: Engine, challenger_version: str | None = None, model: str = SEED_MODEL
                  ) -> list[dict[str, Any]]:  # fmt: skip
    """One entry per (challenger version, champion version) pair seen in `model`'s shadow, newest first."""
    p = predictions.c
    agree = func.sum(case((p.predicted_class == p.champion_class, 1), else_=0))
    query = (
        select(
            p.model_version, p.champion_version, func.count().label("rows"), agree.label("agreements"),
            func.avg(p.predicted_class).label("challenger_positive_rate"),
            func.avg(p.champion_class).label("champion_positive_rate"),
            func.min(p.logged_at).label("first_logged_at"), func.max(p.logged_at).label("last_logged_at"),
        )
        .where(p.shadow.is_(True), p.model == model)
        .group_by(p.model_version, p.champion_version)
    )  # fmt: skip
    if challenger_version is not None:
        query = query.where(p.model_version == challenger_version)
    with engine.connect() as connection:
        pairs = connection.execute(query).mappings().all()
        graded = latest_shadow_grades(connection, challenger_version, model)
    report = []
    for row in sorted(pairs, key=lambda each: str(each["last_logged_at"]), reverse=True):
        rows = int(row["rows"])
        challenger_rate, champion_rate = float(row["challenger_positive_rate"]), float(row["champion_positive_rate"])
        pair = (row["model_version"], row["champion_version"])
        report.append({
            "challenger_version": pair[0],
            "champion_version": pair[1],
            "rows": rows,
            "agreement_rate": int(row["agreements"]) / rows,
            "challenger_positive_rate": challenger_rate,
            "champion_positive_rate": champion_rate,
            "positive_rate_difference": challenger_rate - champion_rate,
            "first_logged_at": row["first_logged_at"],
            "last_logged_at": row["last_logged_at"],
            "realized": graded.get(pair),
        })  # fmt: skip
    return report


def latest_shadow_grades(connection: Any, challenger_version: str | None, model: str = SEED_MODEL
                         ) -> dict[tuple[str, str], dict[str, Any]]:  # fmt: skip
    """(challenger, champion) -> {"challenger": {...}, "champion": {...}}: the newest label job's
    overall grades of both models on the same labelled shadow rows of `model`."""
    r = realized.c
    query = (
        select(realized)
        .where(r.shadow_challenger.is_not(None), r.month.is_(None), r.model == model)
        .order_by(r.computed_at.desc(), r.id.desc())
        .limit(1000)
    )
    if challenger_version is not None:
        query = query.where(r.shadow_challenger == challenger_version)
    graded: dict[tuple[str, str], dict[str, Any]] = {}
    for row in connection.execute(query).mappings():
        pair = (row["shadow_challenger"], row["shadow_champion"])
        role = "challenger" if row["model_version"] == row["shadow_challenger"] else "champion"
        entry = graded.setdefault(pair, {"job_id": row["job_id"]})
        if entry["job_id"] == row["job_id"] and role not in entry:
            entry[role] = {name: row[name] for name in REALIZED_FIELDS}
    return graded
