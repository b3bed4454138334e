"""The pipeline's budget of `make bench` (bench/run.py): wall time and peak RSS of each DVC stage
run alone (`python -m accidents.pipeline.<stage>`) and of a whole `dvc repro --force`, on the bench's
project (the full 2021 accident table), median of `repeats` runs.
"""

from __future__ import annotations

from typing import Any

from bench.common import median_of, timed_command
from tests.support.project import Project

STAGES = ("import_data", "preprocess", "train", "evaluate")


def bench_pipeline(project: Project, repeats: int) -> dict[str, Any]:
    python = str(project.root / ".venv" / "bin" / "python")
    stages = {
        stage: median_of(
            [timed_command([python, "-m", f"accidents.pipeline.{stage}"], project) for _ in range(repeats)]
        )
        for stage in STAGES
    }
    dvc = str(project.root / ".venv" / "bin" / "dvc")
    whole = median_of([timed_command([dvc, "repro", "--force"], project) for _ in range(repeats)])
    return {"stages": stages, "dvc_repro": whole}


def markdown(pipeline: dict[str, Any]) -> list[str]:
    lines = ["", "| pipeline step | wall time | peak RSS |", "|---|---|---|"]
    for stage, figures in pipeline["stages"].items():
        lines.append(f"| `{stage}` | {figures['seconds']:.1f} s | {figures['peak_rss_mb']:.0f} MB |")
    whole = pipeline["dvc_repro"]
    lines.append(f"| whole `dvc repro --force` | {whole['seconds']:.1f} s | {whole['peak_rss_mb']:.0f} MB |")
    return lines
