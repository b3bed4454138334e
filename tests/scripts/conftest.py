"""The stack scripts import each other by file name (`python scripts/run_stack.py` puts scripts/
first on sys.path): these tests import them the same way."""

from __future__ import annotations

import sys
from pathlib import Path

SCRIPTS = str(Path(__file__).resolve().parents[2] / "scripts")
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)
