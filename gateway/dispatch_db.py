"""The daemon's outbox on its own thread: one owner of the SQLite connection, never the loop.

:class:`gateway.outbox.Outbox` is synchronous and its connection belongs to the thread that
opened it (gateway/outbox.py). The daemon opens it on a private single-thread executor and runs
every call there, so a claim or a batch of results never blocks the event loop and calls are
applied in the order they were made (one thread, FIFO). The segment store's ``AsyncStore`` and
the MO part store follow the same pattern.

``async with await AsyncOutbox.open(path) as box: claimed = await box.run(Outbox.claim, 64)``
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Concatenate, ParamSpec, TypeVar

from gateway.outbox import (
    DEFAULT_RETRY,
    Clock,
    Outbox,
    OutboxError,
    RetryPolicy,
    system_clock_ms,
)

P = ParamSpec("P")
T = TypeVar("T")


class AsyncOutbox:
    """An :class:`Outbox` owned by one private thread; ``run`` calls it there."""

    def __init__(self, executor: ThreadPoolExecutor, outbox: Outbox) -> None:
        self._executor = executor
        self.outbox = outbox  # touch only through run(): its connection lives on that thread
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Clock = system_clock_ms,
        max_retries: int = 5,
        retry: RetryPolicy = DEFAULT_RETRY,
        dlr_unknown_after_s: float = 48 * 3600.0,
    ) -> AsyncOutbox:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        loop = asyncio.get_running_loop()
        try:
            box = await loop.run_in_executor(
                executor,
                lambda: Outbox(path, clock=clock, max_retries=max_retries, retry=retry,
                               dlr_unknown_after_s=dlr_unknown_after_s),
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, box)

    async def run(
        self, fn: Callable[Concatenate[Outbox, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(outbox, *args, **kwargs)`` on the outbox thread."""
        if self._closed:
            raise OutboxError("the outbox is closed")
        loop = asyncio.get_running_loop()
        box = self.outbox
        return await loop.run_in_executor(self._executor, lambda: fn(box, *args, **kwargs))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.outbox.close)
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> AsyncOutbox:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
