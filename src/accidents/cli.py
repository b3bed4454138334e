"""`accidents COMMAND [ARGS]`: one short name for every command-line entry point of the package.

Each command is the module of the same job (`accidents drift ...` runs `python -m
accidents.monitoring.drift ...`, with the same arguments and exit code), so dvc.yaml, the DAGs
and the tests can keep naming modules while people type short commands. `accidents COMMAND
--help` shows the module's own help.
"""

from __future__ import annotations

import runpy
import sys

# command -> (module, what it does); grouped as the package is
COMMANDS: dict[str, tuple[str, str]] = {
    "import-data": ("accidents.pipeline.import_data", "DVC stage: download (or read) the official BAAC tables"),
    "preprocess": ("accidents.pipeline.preprocess", "DVC stage: join the tables, temporal train/val/test split"),
    "train": ("accidents.pipeline.train", "DVC stage: train, log to MLflow, register a version"),
    "evaluate": ("accidents.pipeline.evaluate", "DVC stage: challenger vs champion, promotion rule"),
    "predict": ("accidents.pipeline.predict", "DVC stage (or a CSV/JSON file): batch predictions of the champion"),
    "backtest": ("accidents.pipeline.backtest", "what refreshing the training data gains, at several cutoffs"),
    "report-time-experiment": (
        "accidents.report_time.experiment",
        "the report-time model's test AUC/F1/size on the temporal split (issue #25)",
    ),
    "drift": ("accidents.monitoring.drift", "drift job: logged traffic vs the model's reference (.venv-monitoring)"),
    "estimate": (
        "accidents.monitoring.estimation",
        "estimated AUC/F1 before labels, CBPE (.venv-monitoring)",
    ),
    "monitoring-backtest": ("accidents.monitoring.backtest", "a 2020 model serving 2021: drift, estimate vs labels"),
    "realized": ("accidents.monitoring.realized", "label job: realized AUC/F1 of the logged predictions"),
    "replay": ("accidents.monitoring.replay", "send real accidents through a running API"),
    "retrain-decision": ("accidents.monitoring.retrain_decision", "should the monitoring DAG start a retrain?"),
    "new-data": ("accidents.monitoring.new_data", "is a new official year published?"),
    "prediction-log": ("accidents.store.prediction_log", "migrate or export the prediction log"),
    "prometheus-config": ("accidents.stack.prometheus_config", "write Prometheus' config for the local stack"),
    "alertmanager-config": ("accidents.stack.alertmanager_config", "write Alertmanager's config for the local stack"),
    "stage-exchange": ("accidents.stack.stage_exchange", "Celery workers: restore/save a run's state in S3"),
    "config": ("accidents.config", "print one setting (ports, names) for shell scripts"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    return "usage: accidents COMMAND [ARGS]   (accidents COMMAND --help: its own help)\n\ncommands:\n" + "\n".join(
        lines
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"accidents: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    sys.argv = [f"accidents {command}", *rest]
    # The module's own SystemExit (its exit code, or its message on stderr and 1) passes through.
    runpy.run_module(COMMANDS[command][0], run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
