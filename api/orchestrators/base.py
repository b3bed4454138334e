"""What the API needs from a retraining orchestrator, whatever runs the pipeline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


DONE_STATES = frozenset({RunState.SUCCESS.value, RunState.FAILED.value})


@dataclass(frozen=True)
class RetrainRun:
    run_id: str
    state: str  # a RunState value
    orchestrator: str
    started_at: str | None = None  # ISO 8601 with time zone
    finished_at: str | None = None
    detail: str = ""
    tasks: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""  # why it started ("manual: <admin>", "drift: ...", ...): the MLflow tag run_reason

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class OrchestratorError(Exception):
    """Base class; the message is safe to return to the client."""


class OrchestratorUnavailableError(OrchestratorError):
    pass


class RunNotFoundError(OrchestratorError):
    pass


class RetrainConflictError(OrchestratorError):
    def __init__(self, run_id: str | None):
        super().__init__(f"a retraining run is already in progress: {run_id}")
        self.run_id = run_id


class Orchestrator(ABC):
    name: str

    @abstractmethod
    def trigger(self, reason: str) -> RetrainRun:
        """Start one run for `reason`; RetrainConflictError while another runs, OrchestratorUnavailableError
        when it cannot."""

    @abstractmethod
    def status(self, run_id: str) -> RetrainRun:
        """Current state of one run; RunNotFoundError for unknown ids."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources at shutdown."""


def promoted_during(run: RetrainRun, champion: tuple[str, int] | None) -> bool | None:
    """Did this finished run promote the registry's current champion?

    The pipeline registers a version during the run and moves the alias to it only when it
    wins, so: the champion was created while the run ran -> promoted; before -> not promoted;
    after the run ended (a later run promoted since) or unknown -> None.
    """
    if not run.done or champion is None or run.started_at is None or run.finished_at is None:
        return None
    created = champion[1] / 1000.0
    started = datetime.fromisoformat(run.started_at).timestamp()
    finished = datetime.fromisoformat(run.finished_at).timestamp()
    if created < started:
        return False
    return True if created <= finished + 1.0 else None
