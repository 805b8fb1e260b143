"""The segment store's connection owner: one SQLite file, migrations, transactions, listeners.

``Store`` is a synchronous core in the sqlite-utils style: it opens the database file (WAL,
``synchronous=NORMAL``, ``foreign_keys=ON``), applies :data:`segmentation.schema.MIGRATIONS` by
``PRAGMA user_version``, and gives every writer :meth:`Store.atomic` for all-or-nothing writes.
Time comes from an injected clock (``now_ms``), so tests never sleep.

The connection has exactly one owner thread. The daemon uses :class:`AsyncStore`, which creates
the ``Store`` on a private single-thread executor and runs every call there, so a large query
never runs on the event loop thread.

Domain operations (subscribers, events, consent, CSV, privacy) are plain functions in sibling
modules taking a ``Store`` as first argument; ``AsyncStore.run(fn, *args)`` runs any of them.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import sqlite_utils

from gateway.errors import SmsgateError
from segmentation.checkpoint import WAL_SIZE_LIMIT, WalReset
from segmentation.schema import MIGRATIONS

log = logging.getLogger(__name__)

Clock = Callable[[], int]
"""Returns the current UTC time in epoch milliseconds."""

T = TypeVar("T")


def system_clock_ms() -> int:
    """Wall-clock UTC epoch milliseconds (the production clock)."""
    return time.time_ns() // 1_000_000


class StoreError(SmsgateError):
    """The segment store was used wrongly (closed, missing key, schema newer than this code)."""


@dataclass(frozen=True)
class Change:
    """What one committed transaction changed, announced to listeners after COMMIT.

    - ``subscriber_ids``: subscribers whose events, attributes, traits, consent or profile changed
      (including created and erased ones; an erased id no longer exists in ``subscriber``).
    - ``event_types``: types of the events newly inserted (duplicates dropped by the dedupe key are
      not included).
    - ``attributes``: attribute keys set or removed, plus profile fields changed as
      ``"profile.<column>"`` (e.g. ``"profile.region"``), and ``"consent.<program>"`` when the
      consent ledger got a row.
    - ``traits_changed``: True when any ``trait`` row changed (an event of a trait-bearing type).

    Part B uses this to mark the subscribers dirty for exactly the segments that depend on them.
    """

    subscriber_ids: frozenset[int] = frozenset()
    event_types: frozenset[str] = frozenset()
    attributes: frozenset[str] = frozenset()
    traits_changed: bool = False

    def __bool__(self) -> bool:
        return bool(self.subscriber_ids or self.event_types or self.attributes)


Listener = Callable[[Change], None]


@dataclass
class _PendingChange:
    """Mutable accumulator for the change of the transaction in progress."""

    subscriber_ids: set[int] = field(default_factory=set)
    event_types: set[str] = field(default_factory=set)
    attributes: set[str] = field(default_factory=set)
    traits_changed: bool = False

    def freeze(self) -> Change:
        return Change(
            frozenset(self.subscriber_ids),
            frozenset(self.event_types),
            frozenset(self.attributes),
            self.traits_changed,
        )


@dataclass(frozen=True)
class StoreStatistics:
    path: str
    schema_version: int
    transactions_committed: int
    transactions_rolled_back: int
    listeners: int


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into statements (executescript() would COMMIT our lock)."""
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n\t;"):
                yield buffer
            buffer = ""
    if buffer.strip(" \n\t;"):
        raise StoreError(f"incomplete statement in a migration: {buffer[:60]!r}")


class Store:
    """One open segment-store database (see the module docstring).

    ``hash_key`` is the site secret for the keyed hash of numbers (suppression list, erased consent
    rows); operations that need it raise :class:`StoreError` when it was not given.
    ``default_region`` (ISO 3166-1 alpha-2) is how national-format numbers are read.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock = system_clock_ms,
        hash_key: bytes | None = None,
        default_region: str | None = None,
        cache_kib: int = 65_536,
        autocheckpoint_pages: int = 10_000,
    ) -> None:
        self.path = str(path)
        self.clock = clock
        self.default_region = default_region.upper() if default_region else None
        self._hash_key = hash_key
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE in atomic()), so the
        # sqlite3 module never opens one behind our back.
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        # the busy timeout first: switching a fresh file to WAL needs its lock too, and
        # another process may hold it while it applies the migrations
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        # after a WAL restart, trim the file to what is written (segmentation.checkpoint)
        self.conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        # Ingest touches a few random B-tree pages per event (event index, trait; the drain:
        # segment_member, the transition index): a 64 MiB page cache keeps those pages hot,
        # and a 10,000-page WAL checkpoint threshold writes each hot page back once per
        # checkpoint instead of once per batch (measured: CPU per ingested event 78 -> 50 us
        # at 100k subscribers).
        self.conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        # (with a background checkpointer, segmentation.checkpoint, only a safety net)
        self.conn.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint_pages)}")
        self.db = sqlite_utils.Database(self.conn)
        self._depth = 0
        self._pending = _PendingChange()
        self._listeners: list[Listener] = []
        self._wal_reset: WalReset | None = None
        self._committed = 0
        self._rolled_back = 0
        self.migrate()

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        row = self.conn.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    def migrate(self) -> int:
        """Apply every migration newer than ``PRAGMA user_version``; returns the new version.

        The version is read under the write lock (BEGIN IMMEDIATE), so two processes opening a
        fresh file at once (daemon and CLI) cannot both apply the same migration.
        """
        if self.schema_version > len(MIGRATIONS):
            raise StoreError(f"database schema version {self.schema_version} is newer than "
                             f"this code ({len(MIGRATIONS)})")
        if self.schema_version == len(MIGRATIONS):
            return len(MIGRATIONS)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            current = self.schema_version
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in _statements(script):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number}")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return self.schema_version

    # -- time, keys ----------------------------------------------------------------------------

    def now_ms(self) -> int:
        return self.clock()

    @property
    def hash_key(self) -> bytes:
        if not self._hash_key:
            raise StoreError("no hash key configured for the segment store")
        return self._hash_key

    @property
    def has_hash_key(self) -> bool:
        return bool(self._hash_key)

    # -- transactions --------------------------------------------------------------------------

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing writes. Nests with savepoints; listeners run after the outer COMMIT."""
        if self._depth == 0:
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn.execute(f"SAVEPOINT sp{self._depth}")
        self._depth += 1
        try:
            yield self.conn
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.conn.execute("ROLLBACK")
                self._pending = _PendingChange()
                self._rolled_back += 1
            else:
                # Changes noted inside a rolled-back savepoint may be announced anyway: a
                # spurious "dirty" is harmless, a missed one is not.
                self.conn.execute(f"ROLLBACK TO sp{self._depth}")
                self.conn.execute(f"RELEASE sp{self._depth}")
            raise
        self._depth -= 1
        if self._depth > 0:
            self.conn.execute(f"RELEASE sp{self._depth}")
            return
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            # e.g. SQLITE_BUSY or a disk error at COMMIT: leave no half-open transaction.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._pending = _PendingChange()
            self._rolled_back += 1
            raise
        self._committed += 1
        change = self._pending.freeze()
        self._pending = _PendingChange()
        if change:
            for listener in tuple(self._listeners):
                listener(change)
        if self._wal_reset is not None and self._wal_reset.due:
            self._restart_wal(self._wal_reset)

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @property
    def wal_reset(self) -> WalReset | None:
        """The checkpointer's requests this writer acts on (None: it does not restart the
        WAL itself)."""
        return self._wal_reset

    def restart_wal_when_asked(self, reset: WalReset) -> None:
        """Restart the WAL from this (the writer's) connection after a COMMIT whenever the
        checkpointer sharing ``reset`` asks (:mod:`segmentation.checkpoint`): a restart made
        by another connection would empty this connection's page cache."""
        self._wal_reset = reset

    def _restart_wal(self, reset: WalReset) -> None:
        try:
            reset.run(self.conn)
        except sqlite3.Error as exc:  # committed already: the checkpointer's fallback remains
            log.warning("WAL restart by the writer failed: %s", exc)

    def note_change(
        self,
        *,
        subscriber_ids: Iterable[int] = (),
        event_types: Iterable[str] = (),
        attributes: Iterable[str] = (),
        traits_changed: bool = False,
    ) -> None:
        """Record part of the current transaction's :class:`Change` (writers call this).

        Changed attributes are also queued for membership (``membership_queue``, schema 12)
        in this transaction, so a Membership in any process re-evaluates those subscribers;
        ``segmentation.ingest`` queues its events itself (one statement per batch)."""
        if self._depth == 0:
            raise StoreError("note_change() outside atomic()")
        ids = set(subscriber_ids)
        keys = set(attributes)
        self._pending.subscriber_ids.update(ids)
        self._pending.event_types.update(event_types)
        self._pending.attributes.update(keys)
        self._pending.traits_changed |= traits_changed
        if ids and keys and self.membership_wanted():
            # an erased subscriber is no longer there: nothing to re-evaluate
            self.conn.executemany(
                "INSERT INTO membership_queue(subscriber_id, attributes) "
                "SELECT id, ? FROM subscriber WHERE id = ?",
                [(",".join(sorted(keys)), s) for s in sorted(ids)])

    def membership_wanted(self) -> bool:
        """Is a rule-based segment defined? Only then are changes queued for membership (a
        later definition evaluates every subscriber anyway)."""
        return bool(self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM segment WHERE kind <> 'manual')").fetchone()[0])

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(change)`` after every COMMIT that changed something.

        Listeners run synchronously on the store's owner thread (for :class:`AsyncStore`, its
        executor thread: hand work to an event loop with ``loop.call_soon_threadsafe``). They
        must not raise; an exception propagates to the writer after its data is committed.
        Returns a function that removes the listener.
        """
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    # -- small helpers -------------------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        cur = self.conn.execute(sql, params)
        cur.row_factory = sqlite3.Row
        return list(cur.fetchall())

    def scalar(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(
            path=self.path,
            schema_version=self.schema_version,
            transactions_committed=self._committed,
            transactions_rolled_back=self._rolled_back,
            listeners=len(self._listeners),
        )


class AsyncStore:
    """A :class:`Store` owned by one private thread; every call runs there.

    ``async with await AsyncStore.open(path, ...) as s: n = await s.run(count_fn, arg)``.
    """

    def __init__(self, executor: ThreadPoolExecutor, store: Store) -> None:
        self._executor = executor
        self._store = store
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Clock = system_clock_ms,
        hash_key: bytes | None = None,
        default_region: str | None = None,
        cache_kib: int = 65_536,
        autocheckpoint_pages: int = 10_000,
    ) -> AsyncStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-store")
        loop = asyncio.get_running_loop()
        try:
            store = await loop.run_in_executor(
                executor,
                lambda: Store(path, clock=clock, hash_key=hash_key, default_region=default_region,
                              cache_kib=cache_kib, autocheckpoint_pages=autocheckpoint_pages),
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, store)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(store, *args, **kwargs)`` on the store's thread and return its result."""
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        store = self._store
        return await loop.run_in_executor(self._executor, lambda: fn(store, *args, **kwargs))

    async def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Register a listener (it runs on the store thread; see :meth:`Store.add_listener`)."""
        return await self.run(lambda s: s.add_listener(listener))

    async def aclose(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._store.close)
        self._closed = True
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
