"""Where the parts of a multipart MO wait for the rest: a small storage Protocol, and the
in-memory store the client uses unless it is given another.

Issue 3 asks for "deliver_sm_resp always sent, after the event is handed over". For a part
that does not complete its message, handing over means storing it: the client awaits
``store.add(part)`` before it writes that part's deliver_sm_resp. A store that has committed
the part when ``add`` returns (the daemon's SQLite store) therefore makes every part the SMSC
saw acknowledged survive a crash; a store that raises makes the client answer with a temporary
error (ESME_RX_T_APPN), so the SMSC delivers the part again. The in-memory store keeps the old
guarantee only: parts survive a dropped link, not a dead process.

A group's life in a store:

- ``add(part)`` keeps the part (a second copy of a seq is ignored) and returns the group's
  ``MoGroup`` once every part is in, else None. It also returns the complete group when the
  part is a copy of one of a complete group still stored: the handler failed last time, the
  SMSC delivers that part again, and the message must be offered again.
- The client hands ``group.message`` to its handler, then calls ``remove(group)``. A crash in
  between offers the message again later (at least once, never lost).
- ``expire()`` returns the groups whose deadline passed, as incomplete messages
  (``complete=False``, ``missing`` listed): the policy is to deliver what we have, marked,
  rather than drop it. A group's deadline is its first part's arrival plus the timeout; each
  group ``expire()`` returns gets a new deadline one timeout later, so a group whose hand-over
  failed (or whose link dropped before it) is offered again then, not in a hot loop.
- ``next_expiry()``: seconds until the earliest deadline (0 or less: due), None when empty.

Time belongs to the store (no ``now`` argument): a store that outlives the process must measure
ages with the wall clock, because the client's monotonic clock starts again after a reboot.
Every method may be called concurrently from several links' tasks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from drivers.smpp.mo import MobileOriginated, MoPart, ReassemblyStatistics, assemble, group_key

__all__ = ["InMemoryMoStore", "MoGroup", "MoPartStore", "group_key"]


@dataclass(frozen=True, slots=True)
class MoGroup:
    """A message a store gives back: ``key`` (``mo.group_key`` of its parts) identifies the
    group for ``remove``."""

    key: str
    message: MobileOriginated


class MoPartStore(Protocol):
    async def add(self, part: MoPart) -> MoGroup | None:
        """Keep ``part`` (durably, if the store is durable) before returning; the group once
        every part is in. Only multipart parts are offered (``part.reference`` is not None)."""
        ...

    async def remove(self, group: MoGroup) -> None:
        """Forget the group: its message was handed over. Removing twice is harmless."""
        ...

    async def expire(self) -> list[MoGroup]:
        """The groups whose deadline passed, each with its deadline moved one timeout on."""
        ...

    async def next_expiry(self) -> float | None:
        """Seconds until the earliest deadline; None when no group waits."""
        ...


@dataclass
class _Group:
    deadline: float
    total: int
    parts: dict[int, MoPart] = field(default_factory=dict)


class InMemoryMoStore:
    """The default store: parts in a dict, lost with the process.

    At most ``max_pending`` groups wait: a new group beyond that makes the oldest ones due at
    once (the client's timer releases them as incomplete within its tick, at most a second).
    """

    def __init__(
        self,
        timeout: float = 120.0,
        *,
        max_pending: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self._clock = clock
        # Ordered by deadline: a new or re-armed group's deadline (now + timeout) is never
        # earlier than any stored one, as long as the clock does not go backwards.
        self._groups: OrderedDict[str, _Group] = OrderedDict()
        self._assembled = 0
        self._timed_out = 0
        self._duplicates = 0

    async def add(self, part: MoPart) -> MoGroup | None:
        key = group_key(part)
        group = self._groups.get(key)
        if group is None:
            now = self._clock()
            group = self._groups[key] = _Group(now + self.timeout, part.total)
            self._make_room(now)
        if part.seq in group.parts:
            self._duplicates += 1
        else:
            group.parts[part.seq] = part
        if len(group.parts) < group.total:
            return None
        self._assembled += 1
        return MoGroup(key, assemble(group.parts.values(), group.total))

    def _make_room(self, now: float) -> None:
        excess = len(self._groups) - self.max_pending
        for group in self._groups.values():
            if excess <= 0:
                break
            if group.deadline > now:
                group.deadline = now  # still first in deadline order: the oldest are in front
            excess -= 1

    async def remove(self, group: MoGroup) -> None:
        self._groups.pop(group.key, None)

    async def expire(self) -> list[MoGroup]:
        now = self._clock()
        due: list[tuple[str, _Group]] = []
        for key, group in self._groups.items():
            if group.deadline > now:
                break
            due.append((key, group))
        out = []
        for key, group in due:
            group.deadline = now + self.timeout
            self._groups.move_to_end(key)
            self._timed_out += 1
            out.append(MoGroup(key, assemble(group.parts.values(), group.total)))
        return out

    async def next_expiry(self) -> float | None:
        for group in self._groups.values():
            return group.deadline - self._clock()
        return None

    def statistics(self) -> ReassemblyStatistics:
        return ReassemblyStatistics(
            len(self._groups), self._assembled, self._timed_out, self._duplicates
        )
