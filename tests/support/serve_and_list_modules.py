"""`uvicorn ...` exactly as the command line runs it; when the server is stopped (SIGTERM or
SIGINT, after its graceful shutdown) the names of every module the process imported are written
to the file given first:

    python -m tests.support.serve_and_list_modules OUT.json api.main:app --host 127.0.0.1 --port P
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType

import uvicorn


def main() -> None:
    out = Path(sys.argv[1])

    def list_modules_and_exit(signum: int, frame: FrameType | None) -> None:
        out.write_text(json.dumps(sorted(sys.modules)))
        raise SystemExit(0)

    # uvicorn handles these signals while it serves, then restores these handlers and raises the
    # signal it caught again: so this runs once the server has shut down.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, list_modules_and_exit)
    uvicorn.main(sys.argv[2:])


if __name__ == "__main__":
    main()
