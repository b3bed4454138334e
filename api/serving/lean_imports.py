"""Keep optional heavy libraries out of the serving process: its memory is a measured goal.

scikit-learn imports pandas (which loads pyarrow) whenever it is installed, and skops builds its
default allow-list with `sklearn.utils.all_estimators()`, which imports scikit-learn's testing
helpers and with them pytest. All three are optional to those libraries (they `try` the import)
and unused here: requests become numpy arrays, never DataFrames. Refusing them before the
first model load saves about 85 MB of the API's resident memory (README, Benchmarks).

Installed by the serving entry point (`api.main:app`) only: a process that builds apps with
`create_app()` (the tests, next to the pipeline) keeps its imports untouched.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

KEPT_OUT: tuple[str, ...] = ("pandas", "pyarrow", "pytest")


class KeptOutError(ModuleNotFoundError):
    pass


class _KeepOut(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] in KEPT_OUT:
            raise KeptOutError(
                f"{fullname} is kept out of the API process (memory goal, api/serving/lean_imports.py)", name=fullname
            )
        return None


def keep_heavy_modules_out() -> list[str]:
    """Refuse KEPT_OUT imports in this process from now on; the ones already loaded (if any)."""
    if not any(isinstance(finder, _KeepOut) for finder in sys.meta_path):
        sys.meta_path.insert(0, _KeepOut())
    return [name for name in KEPT_OUT if name in sys.modules]
