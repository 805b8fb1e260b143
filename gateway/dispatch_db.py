"""The daemon's outbox on its own thread: one owner of the SQLite connection, never the loop.

:class:`gateway.outbox.Outbox` is synchronous and its connection belongs to the thread that
opened it (gateway/outbox.py). The daemon opens it on a private single-thread executor and runs
every call there, so a claim or a batch of results never blocks the event loop and calls are
applied in the order they were made (one thread, FIFO).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

from gateway.outbox import Outbox

P = ParamSpec("P")
T = TypeVar("T")


class AsyncOutbox:
    """``box = await AsyncOutbox.open(path, ...)``; ``await box.run(Outbox.claim, 64)``."""

    def __init__(self, executor: ThreadPoolExecutor, outbox: Outbox) -> None:
        self._executor = executor
        self.outbox = outbox  # touch only through run(): its connection lives on that thread
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path, **kwargs: object) -> AsyncOutbox:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        loop = asyncio.get_running_loop()
        try:
            box = await loop.run_in_executor(executor, lambda: Outbox(path, **kwargs))  # type: ignore[arg-type]
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, box)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(outbox, *args)`` on the outbox thread."""
        loop = asyncio.get_running_loop()
        box = self.outbox
        return await loop.run_in_executor(self._executor, lambda: fn(box, *args))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.outbox.close)
        self._executor.shutdown(wait=True)
