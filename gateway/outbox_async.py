"""The outbox for the asyncio daemon: one private thread owns the connection.

Every call runs on a single-thread executor, so a large batch never blocks the event loop and
the SQLite connection is only ever used by the thread that created it (as the segment store's
``AsyncStore`` does). The methods mirror :class:`gateway.outbox.Outbox`; ``run`` reaches the
rest.

``async with await AsyncOutbox.open(path) as ob: claimed = await ob.claim(64)``
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from gateway.outbox import (
    DEFAULT_RETRY,
    Accepted,
    Claimed,
    Clock,
    Lane,
    NewMessage,
    Outbox,
    OutboxError,
    OutboxStatistics,
    Outcome,
    Report,
    ReportResult,
    RetryPolicy,
    system_clock_ms,
)

T = TypeVar("T")


class AsyncOutbox:
    def __init__(self, executor: ThreadPoolExecutor, outbox: Outbox) -> None:
        self._executor = executor
        self._outbox = outbox
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
            outbox = await loop.run_in_executor(
                executor,
                lambda: Outbox(path, clock=clock, max_retries=max_retries, retry=retry,
                               dlr_unknown_after_s=dlr_unknown_after_s),
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, outbox)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(outbox, *args)`` on the outbox thread."""
        if self._closed:
            raise OutboxError("the outbox is closed")
        loop = asyncio.get_running_loop()
        outbox = self._outbox
        return await loop.run_in_executor(self._executor, lambda: fn(outbox, *args))

    async def enqueue_many(self, messages: Sequence[NewMessage]) -> list[Accepted]:
        return await self.run(Outbox.enqueue_many, messages)

    async def claim(self, limit: int, lanes: Iterable[Lane] = tuple(Lane)) -> list[Claimed]:
        lanes = tuple(lanes)
        return await self.run(lambda ob: ob.claim(limit, lanes=lanes))

    async def mark_many(self, outcomes: Sequence[Outcome]) -> None:
        await self.run(Outbox.mark_many, outcomes)

    async def record_reports(self, reports: Sequence[Report]) -> ReportResult:
        return await self.run(Outbox.record_reports, reports)

    async def recover(self) -> int:
        return await self.run(Outbox.recover)

    async def cancel_queued_for_number(self, e164: str, detail: str = "opt-out") -> int:
        return await self.run(Outbox.cancel_queued_for_number, e164, detail)

    async def statistics(self) -> OutboxStatistics:
        return await self.run(Outbox.statistics)

    async def aclose(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._outbox.close)
        self._closed = True
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> AsyncOutbox:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
