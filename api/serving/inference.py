"""Where big batches run: one dedicated thread with OpenMP/BLAS limited to a single thread.

(Requests of a few rows are scored by the compiled trees right on the event loop: at most a few
milliseconds, cheaper than a hand-off to this thread. See ModelBundle.uses_compiled.)

On small machines the model's OpenMP pool (HistGradientBoosting) competes with the server's own
threads: measured on 2 cores, one-row predict_proba drops from 26 ms to 4 ms under load with one
thread. A single inference thread also keeps big batches off the event loop, so health checks
and token checks stay responsive while a batch is scored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from threadpoolctl import threadpool_limits

T = TypeVar("T")


def _single_threaded_math() -> None:
    # Applies to this (worker) thread's OpenMP setting and to the process's BLAS pools.
    threadpool_limits(limits=1)


class InferenceExecutor:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="inference", initializer=_single_threaded_math
        )

    async def run(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
