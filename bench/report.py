"""One benchmark section written alone (`make bench ARGS="--<section>-only"`): the run's results as
bench/results/<date>-<name>.json and the section's table as .md after a line naming the machine."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def write_section(results: dict[str, Any], folder: Path, key: str, name: str,
                  markdown: Callable[[dict[str, Any]], list[str]]) -> None:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{datetime.now(UTC):%Y-%m-%d}-{name}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    machine = results["machine"]
    header = f"Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}; {machine['date']}."
    table = "\n".join([header, *markdown(results[key])]) + "\n"
    stem.with_suffix(".md").write_text(table)
    print(table)
