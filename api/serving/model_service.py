"""The serving model: the registry's champion, a local copy as fallback, swapped atomically.

Requests read `ModelService.current` once and use that immutable `Served` object to the end,
so a swap (one reference assignment) never changes a model under a request in flight. A
background thread polls the champion alias; a version that fails to load or to pass
`check_model` is rejected and the previous model keeps serving. The registry is read through
MLflow's REST API (api/serving/registry_client.py), not the `mlflow` package: the API's memory budget.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from accidents.config import CHAMPION_ALIAS, MODEL_NAME
from accidents.features import SEED_EXAMPLE
from accidents.model.model_store import ModelBundle, ModelLoadError, read_bundle
from api.serving.registry_client import MlflowRegistry, RegisteredVersion, RegistryError

logger = logging.getLogger(__name__)

SOURCE_REGISTRY = "registry"
SOURCE_LOCAL = "local"


@dataclass(frozen=True)
class Served:
    bundle: ModelBundle
    source: str  # SOURCE_REGISTRY or SOURCE_LOCAL (the pipeline's local champion copy)
    loaded_at: str

    @property
    def version(self) -> str | None:
        return self.bundle.metadata.version


@dataclass(frozen=True)
class CheckResult:
    """What one check of the champion alias did."""

    action: str  # loaded | swapped | unchanged | rejected | unavailable | no-model | cleared (challenger)
    registry_reachable: bool
    previous_version: str | None
    current_version: str | None
    champion_version: str | None = None  # what the registry's alias points to, when reachable
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RegistryUnavailableError(Exception):
    pass


class ModelService:
    """The model behind one registry alias: the champion (with its local copy as fallback), or with
    alias=CHALLENGER_ALIAS and local_path=None the shadow challenger, which is unloaded when the
    alias is removed (promotion or drop) instead of kept like a champion.

    `model_name` and `example` say which registered model and which contract: the seed's by default,
    the report-time model's (config.REPORT_MODEL_NAME, report_time.features.example_row) for
    /v2/predict. Every version loaded, from the registry or the local copy, must score `example`."""

    def __init__(
        self,
        tracking_uri: str,
        local_path: Path | None,
        poll_seconds: float,
        timeout_seconds: float,
        on_change: Callable[[Served], None] | None = None,
        alias: str = CHAMPION_ALIAS,
        model_name: str = MODEL_NAME,
        example: Sequence[float] = SEED_EXAMPLE,
    ):
        self.tracking_uri = tracking_uri
        self.alias = alias
        self.model_name = model_name
        self.example = tuple(example)
        # log and thread name: "champion" for the seed's, "accidents-report-time@champion" for another model
        self.label = alias if model_name == MODEL_NAME else f"{model_name}@{alias}"
        self.local_path = local_path
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self._on_change = on_change
        self._current: Served | None = None
        self._check_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.degraded = False  # serving while the registry is unreachable
        self.last_check: CheckResult | None = None
        self._registry = MlflowRegistry(tracking_uri, timeout_seconds)

    @property
    def current(self) -> Served | None:
        return self._current

    @property
    def registry(self) -> MlflowRegistry:
        """The registry client (promotion and drop write the aliases through it)."""
        return self._registry

    def start(self) -> CheckResult:
        result = self.check()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll, name=f"{self.label}-poller", daemon=True)
            self._thread.start()
        return result

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_seconds + 5)
        self._registry.close()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check()
            except Exception:  # the poller must survive anything; the next tick retries
                logger.exception("%s check failed", self.label)

    def check(self) -> CheckResult:
        """Look at the champion alias now; load and swap when it moved. Serialized."""
        with self._check_lock:
            previous = self._current.version if self._current else None
            try:
                result = self._check_registry(previous)
            except RegistryUnavailableError as error:
                result = self._fallback_local(previous, str(error))
            self.degraded = self._current is not None and not result.registry_reachable
            self.last_check = result
        quiet = result.action == "no-model" and self.local_path is None and result.registry_reachable  # no challenger
        log = logger.warning if result.action in ("rejected", "unavailable", "no-model") and not quiet else logger.info
        log("%s check: %s", self.label, result.action, extra={"fields": result.as_dict()})
        return result

    def _check_registry(self, previous: str | None) -> CheckResult:
        version = self._champion()
        if version is None and self.local_path is None:  # the challenger: no alias, nothing to shadow
            if self._current is None:
                return CheckResult("no-model", True, None, None, None, f"the registry has no {self.label}")
            self._current = None
            return CheckResult("cleared", True, previous, None, None, f"the {self.alias} alias was removed")
        if version is None:
            if self._current is None:
                return self._fallback_local(previous, f"the registry has no {self.label} yet", reachable=True)
            return CheckResult("unchanged", True, previous, previous, None, f"the registry has no {self.label}")
        wanted = str(version.version)
        if self._current is not None and previous == wanted:
            if self._current.source == SOURCE_LOCAL:  # same version as the local copy: now confirmed
                self._swap(Served(self._current.bundle, SOURCE_REGISTRY, self._current.loaded_at))
            return CheckResult("unchanged", True, previous, previous, wanted)
        try:
            bundle = self._registry.load_version(version, self.example)
        except (ModelLoadError, RegistryError) as error:
            if self._current is None and self.local_path is not None:
                return self._fallback_local(previous, f"version {wanted} rejected: {error}", reachable=True)
            if self.local_path is None:  # the challenger: the alias no longer names the loaded version
                self._current = None
                return CheckResult("rejected", True, previous, None, wanted, f"version {wanted} rejected: {error}")
            return CheckResult("rejected", True, previous, previous, wanted, f"version {wanted} rejected: {error}")
        self._swap(Served(bundle, SOURCE_REGISTRY, _now()))
        return CheckResult("swapped" if previous else "loaded", True, previous, wanted, wanted)

    def _fallback_local(self, previous: str | None, reason: str, reachable: bool = False) -> CheckResult:
        """Registry unusable: keep what serves; with nothing yet, load the local champion copy."""
        if self._current is not None:
            return CheckResult("unavailable", reachable, previous, previous, None, reason)
        if self.local_path is None:
            return CheckResult("no-model", reachable, None, None, None, reason)
        if not self.local_path.is_file():
            return CheckResult("no-model", reachable, None, None, None, f"{reason}; no local copy at {self.local_path}")
        try:
            bundle = read_bundle(self.local_path, self.example)
        except ModelLoadError as error:
            return CheckResult("no-model", reachable, None, None, None, f"{reason}; local copy rejected: {error}")
        self._swap(Served(bundle, SOURCE_LOCAL, _now()))
        return CheckResult(
            "loaded", reachable, None, bundle.metadata.version, None, f"{reason}; serving the local copy"
        )

    def _swap(self, served: Served) -> None:
        self._current = served  # one reference assignment: atomic for readers
        if self._on_change is not None:
            self._on_change(served)

    def _champion(self) -> RegisteredVersion | None:
        try:
            return self._registry.alias_version(self.alias, self.model_name)
        except RegistryError as error:
            raise RegistryUnavailableError(f"cannot read the {self.label} alias: {error}") from error

    def registry_champion(self) -> tuple[str, int] | None:
        """(version, creation time in ms) of the registry's champion; None when unknown."""
        try:
            version = self._champion()
        except RegistryUnavailableError:
            return None
        return None if version is None else (version.version, version.creation_timestamp)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
