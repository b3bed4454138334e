"""What every pipeline stage shares: logging, clear failures, small file helpers."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accidents.config import MODEL_NAME, REPORT_MODEL_NAME

log = logging.getLogger("accidents")

# The models the pipeline trains (accidents.pipeline.lifecycle describes each); `params.yaml`
# `pipeline.models` selects them. The seed model stays in every run: its files are the DVC outputs
# the API falls back on, which `dvc repro` cannot leave unwritten; a run without the report-time
# model writes `skipped.json` (with the reason) into that model's output folders instead.
SEED, REPORT_TIME = "seed", "report_time"
MODELS = (SEED, REPORT_TIME)
REGISTERED_NAMES = {SEED: MODEL_NAME, REPORT_TIME: REPORT_MODEL_NAME}  # each model's name in the MLflow registry
SKIPPED_FILE = "skipped.json"


class PipelineError(RuntimeError):
    """A failure with a message meant for the person running the pipeline (no traceback)."""


def run_stage(name: str, body: Callable[[], None]) -> int:
    """Run one stage with progress logging; known failures exit 1 with their message."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [" + name + "] %(message)s")
    # Quieter third-party loggers: the stage's own progress is what matters in task logs.
    for noisy in ("mlflow", "urllib3", "alembic", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        body()
    except PipelineError as error:
        log.error("%s failed: %s", name, error)
        return 1
    return 0


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (temp file + rename), so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def warn_loudly(message: str) -> None:
    banner = "!" * 78
    print(f"\n{banner}\n{message}\n{banner}\n", file=sys.stderr, flush=True)
    log.warning(message)


def selected(params: dict[str, Any]) -> tuple[str, ...]:
    """The models `pipeline.models` asks for, checked (default: every model)."""
    models = (params.get("pipeline") or {}).get("models", list(MODELS))
    if not isinstance(models, list) or not models or not set(models) <= set(MODELS):
        raise PipelineError(f"pipeline.models must be a non-empty list of {list(MODELS)}, got {models!r}")
    if SEED not in models:
        raise PipelineError(
            "pipeline.models must include seed: its files are the DVC outputs the API falls back on "
            f"(models/champion.zip), which dvc repro cannot leave unwritten; got {models!r}"
        )
    return tuple(model for model in MODELS if model in models)


def run_report_time(params: dict[str, Any], output: Path, upstream: Path | None, run: Callable[[], object]) -> None:
    """A stage's part for the report-time model: its output folder cleared (a run never leaves
    another run's files behind), then `run`; unless `pipeline.models` leaves the model out or an
    earlier stage skipped it (`upstream`'s skipped.json): then `output` records why instead."""
    shutil.rmtree(output, ignore_errors=True)
    reason = "not in pipeline.models" if REPORT_TIME not in selected(params) else None
    if reason is None and upstream is not None:
        reason = skipped_reason(upstream)
    if reason is not None:
        skip(output, reason)
    else:
        run()


def skip(folder: Path, reason: str) -> None:
    """Record in a skipped model's output folder that this run did not produce it, and why."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / SKIPPED_FILE, {"skipped": True, "reason": reason})
    log.info("%s: %s", folder.name, reason)


def skipped_reason(folder: Path) -> str | None:
    """Why an earlier stage of this run skipped the model whose output folder this is, or None."""
    marker = folder / SKIPPED_FILE
    return read_json(marker)["reason"] if marker.is_file() else None
