"""Store core: migrations, pragmas, atomic(), listeners, AsyncStore — on real SQLite files."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from segmentation.schema import MIGRATIONS
from segmentation.store import AsyncStore, Change, Store, StoreError, _statements
from tests.segmentation.conftest import ManualClock


def test_open_applies_every_migration_and_pragmas(store: Store) -> None:
    assert store.schema_version == len(MIGRATIONS)
    assert store.scalar("PRAGMA journal_mode") == "wal"
    assert store.scalar("PRAGMA foreign_keys") == 1
    assert store.scalar("PRAGMA synchronous") == 1  # NORMAL
    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"subscriber", "event", "event_daily", "trait", "consent", "suppression",
            "segment", "segment_member"} <= tables


def test_reopen_is_idempotent_and_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as s:
        s.conn.execute("INSERT INTO attribute_def(key, type, created_ms) VALUES ('a','text',1)")
    with Store(path) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert s.scalar("SELECT count(*) FROM attribute_def") == 1
        s.conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError):
        Store(path)


def test_injected_clock(store: Store, clock: ManualClock) -> None:
    assert store.now_ms() == clock.now
    clock.advance(1500)
    assert store.now_ms() == clock.now


def _insert_def(store: Store, key: str) -> None:
    store.conn.execute(
        "INSERT INTO attribute_def(key, type, created_ms) VALUES (?, 'text', 0)", (key,)
    )


def test_atomic_rolls_back_everything_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError), store.atomic():
        _insert_def(store, "a")
        with store.atomic():
            _insert_def(store, "b")
        raise RuntimeError("boom")
    assert store.scalar("SELECT count(*) FROM attribute_def") == 0
    assert not store.in_transaction


def test_inner_savepoint_rolls_back_alone(store: Store) -> None:
    with store.atomic():
        _insert_def(store, "a")
        with pytest.raises(RuntimeError), store.atomic():
            _insert_def(store, "b")
            raise RuntimeError("inner")
    keys = [r["key"] for r in store.query("SELECT key FROM attribute_def")]
    assert keys == ["a"]


def test_listeners_called_once_after_outer_commit_with_merged_change(store: Store) -> None:
    seen: list[Change] = []
    remove = store.add_listener(seen.append)
    with store.atomic():
        store.note_change(subscriber_ids={1}, event_types={"purchase"}, traits_changed=True)
        with store.atomic():
            store.note_change(subscriber_ids={2}, attributes={"age"})
        assert seen == []  # not before COMMIT
    assert seen == [Change(frozenset({1, 2}), frozenset({"purchase"}), frozenset({"age"}), True)]
    # a rolled-back transaction announces nothing
    with pytest.raises(RuntimeError), store.atomic():
        store.note_change(subscriber_ids={3})
        raise RuntimeError
    # an empty change announces nothing
    with store.atomic():
        pass
    assert len(seen) == 1
    remove()
    with store.atomic():
        store.note_change(subscriber_ids={4})
    assert len(seen) == 1


def test_note_change_outside_a_transaction_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.note_change(subscriber_ids={1})


def test_hash_key_required_when_used(tmp_path: Path) -> None:
    with Store(tmp_path / "k.db") as s:
        assert not s.has_hash_key
        with pytest.raises(StoreError):
            _ = s.hash_key


def test_statistics_is_frozen(store: Store) -> None:
    with store.atomic():
        pass
    stats = store.statistics()
    assert stats.transactions_committed == 1
    with pytest.raises(AttributeError):
        stats.listeners = 3  # type: ignore[misc]


async def test_async_store_runs_every_call_on_one_other_thread(tmp_path: Path) -> None:
    clock = ManualClock()
    threads: set[int] = set()

    def where(s: Store, x: int) -> int:
        threads.add(threading.get_ident())
        with s.atomic():
            _insert_def(s, f"k{x}")
        return int(s.scalar("SELECT count(*) FROM attribute_def"))

    async with await AsyncStore.open(tmp_path / "a.db", clock=clock) as a:
        assert await a.run(where, 1) == 1
        assert await a.run(where, 2) == 2
        changes: list[Change] = []
        await a.add_listener(changes.append)

        def touch(s: Store) -> None:
            with s.atomic():
                s.note_change(subscriber_ids={7})

        await a.run(touch)
        assert changes == [Change(subscriber_ids=frozenset({7}))]
    assert len(threads) == 1
    assert threading.get_ident() not in threads
    with pytest.raises(StoreError):
        await a.run(where, 3)


def test_a_failed_commit_rolls_back_and_announces_nothing(store: Store) -> None:
    # A deferred foreign key is checked at COMMIT: the commit itself fails.
    seen: list[Change] = []
    store.add_listener(seen.append)
    store.conn.execute("PRAGMA defer_foreign_keys = ON")
    with pytest.raises(sqlite3.IntegrityError), store.atomic():
        store.conn.execute("INSERT INTO trait(subscriber_id) VALUES (999)")
        store.note_change(subscriber_ids={999})
    assert not store.conn.in_transaction and not store.in_transaction
    assert store.scalar("SELECT count(*) FROM trait") == 0
    assert seen == []
    with store.atomic():
        _insert_def(store, "after")  # the store is usable again


def test_concurrent_first_opens_apply_migrations_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def opener() -> None:
        try:
            barrier.wait(timeout=10)
            Store(path).close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    with Store(path) as s:
        assert s.schema_version == len(MIGRATIONS)


def _apply(conn: sqlite3.Connection, version: int, start: int = 0) -> None:
    """Bring a fresh file (or one at schema ``start``) to an older schema version, as older
    code left it."""
    for script in MIGRATIONS[start:version]:
        if isinstance(script, str):
            for statement in _statements(script):
                conn.execute(statement)
        else:
            script(conn)
    conn.execute(f"PRAGMA user_version = {version}")


def test_migration_4_keeps_rechecks_and_transitions_clustered_by_subscriber(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v3.db"
    c = sqlite3.connect(path, isolation_level=None)
    _apply(c, 3)
    c.execute("INSERT INTO subscriber(id, phone_e164, created_ms) VALUES (1, '+1', 0), "
              "(2, '+2', 0)")
    c.execute("INSERT INTO segment(id, name, definition, created_ms) VALUES (1, 'a', '{}', 0), "
              "(2, 'b', '{}', 0)")
    c.execute("INSERT INTO segment_recheck VALUES (1, 2, 50), (2, 1, 60), (1, 1, 70)")
    c.execute("INSERT INTO segment_transition(segment_id, subscriber_id, ts_ms, direction, "
              "cause) VALUES (2, 1, 5, 'enter', 'event'), (1, 1, 6, 'enter', 'event')")
    # the re-check queue as migration 4 left it (migration 6 drops it)
    c.execute("BEGIN")
    _apply(c, 4, start=3)
    c.execute("COMMIT")
    assert c.execute("SELECT * FROM segment_recheck ORDER BY due_ms").fetchall() == [
        (1, 2, 50), (2, 1, 60), (1, 1, 70)]
    pk = [r[2] for r in c.execute("PRAGMA index_info(sqlite_autoindex_segment_recheck_1)")]
    assert pk == ["subscriber_id", "segment_id"]
    for sql in ("SELECT due_ms FROM segment_recheck WHERE subscriber_id = 1 AND segment_id = 2",
                "SELECT 1 FROM segment_recheck WHERE due_ms <= 55"):
        plan = " ".join(r[3] for r in c.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING" in plan and "SCAN" not in plan, (sql, plan)
    c.execute("PRAGMA foreign_keys = ON")
    c.execute("DELETE FROM segment WHERE id = 1")  # the re-check queue keeps its cascades
    assert c.execute("SELECT * FROM segment_recheck").fetchall() == [(2, 1, 60)]
    c.execute("INSERT INTO segment(id, name, definition, created_ms) VALUES (1, 'a', '{}', 0)")
    c.execute("INSERT INTO segment_transition(segment_id, subscriber_id, ts_ms, direction, "
              "cause) VALUES (1, 1, 6, 'enter', 'event')")
    c.close()
    with Store(path) as s:
        assert s.schema_version == len(MIGRATIONS) >= 4
        assert s.conn.execute("SELECT count(*) FROM segment_transition").fetchone()[0] == 2
        idx = {r[1] for r in s.conn.execute("PRAGMA index_list(segment_transition)")}
        assert idx == {"segment_transition_sub_seg"}
        sql = ("SELECT ts_ms FROM segment_transition WHERE subscriber_id = 1 AND "
               "segment_id = 2 ORDER BY ts_ms")
        plan = " ".join(r[3] for r in s.conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING" in plan and "SCAN" not in plan, (sql, plan)


def test_migration_6_replaces_the_recheck_queue_by_a_sweep_mark(tmp_path: Path) -> None:
    path = tmp_path / "v5.db"
    c = sqlite3.connect(path, isolation_level=None)
    _apply(c, 5)
    c.execute("INSERT INTO subscriber(id, phone_e164, created_ms) VALUES (1, '+1', 10), "
              "(2, '+2', 20), (3, '+3', 30)")
    c.execute("INSERT INTO segment(id, name, definition, created_ms, last_full_ms) VALUES "
              "(1, 'a', '{}', 0, 500), (2, 'b', '{}', 0, NULL)")
    c.execute("INSERT INTO segment_recheck VALUES (1, 2, 900), (1, 1, 700)")
    c.close()
    with Store(path) as s:
        conn = s.conn
        assert s.schema_version == len(MIGRATIONS) >= 6
        # swept from the last full recompute: every pair was evaluated at or after it
        assert conn.execute("SELECT id, swept_ms FROM segment ORDER BY id").fetchall() == [
            (1, 500), (2, None)]
        assert conn.execute("SELECT count(*) FROM sqlite_schema WHERE name LIKE "
                            "'segment_recheck%'").fetchone() == (0,)
        sql = "SELECT id FROM subscriber WHERE created_ms > 15 AND created_ms <= 30"
        assert {r[0] for r in conn.execute(sql)} == {2, 3}
        plan = " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "subscriber_created" in plan, plan
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _ephemeral(conn: sqlite3.Connection, sql: str) -> bool:
    return "OpenEphemeral" in {r[1] for r in conn.execute(f"EXPLAIN {sql}")}


_TRANSITION = ("INSERT INTO segment_transition(segment_id, subscriber_id, ts_ms, direction, "
               "cause) VALUES (1, 1, 7, 'enter', ?)")


def test_migration_5_transition_checks_are_comparisons_with_the_same_values(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v4.db"
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    _apply(c, 4)
    c.execute("INSERT INTO subscriber(id, phone_e164, created_ms) VALUES (1, '+1', 0)")
    c.execute("INSERT INTO segment(id, name, definition, created_ms) VALUES (1, 'a', '{}', 0)")
    c.execute(_TRANSITION.replace("?", "'event'"))
    c.execute("INSERT INTO segment_transition(id, segment_id, subscriber_id, ts_ms, direction, "
              "cause, cause_ref) VALUES (9, 1, 1, 8, 'exit', 'manual', 'replace')")
    # the IN lists build a temporary b-tree for every row written
    assert _ephemeral(c, _TRANSITION.replace("?", "'time'"))
    with Store(path) as s:
        assert s.schema_version == len(MIGRATIONS) >= 5
        conn = s.conn
        assert conn.execute("SELECT * FROM segment_transition ORDER BY id").fetchall() == [
            (1, 1, 1, 7, "enter", "event", None), (9, 1, 1, 8, "exit", "manual", "replace")]
        assert not _ephemeral(conn, _TRANSITION.replace("?", "'time'"))
        idx = {r[1] for r in conn.execute("PRAGMA index_list(segment_transition)")}
        assert idx == {"segment_transition_sub_seg"}
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        for cause in ("event", "time", "definition", "manual", "attribute", "reconcile"):
            conn.execute(_TRANSITION, (cause,))
        for bad in ("evnt", "", "Event"):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
                conn.execute(_TRANSITION, (bad,))
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(_TRANSITION.replace("'enter'", "'stay'"), ("event",))
        assert conn.execute("SELECT max(id) FROM segment_transition").fetchone() == (15,)
        # still cascades with its subscriber and segment
        conn.execute("DELETE FROM segment WHERE id = 1")
        assert conn.execute("SELECT count(*) FROM segment_transition").fetchone() == (0,)
    # a connection opened before the migration goes on working with the new table
    c.execute("INSERT INTO segment(id, name, definition, created_ms) VALUES (2, 'b', '{}', 0)")
    c.execute(_TRANSITION.replace("1, 1, 7", "2, 1, 7").replace("?", "'time'"))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        c.execute(_TRANSITION.replace("1, 1, 7", "2, 1, 7"), ("evnt",))
    assert c.execute("SELECT count(*) FROM segment_transition").fetchone() == (1,)
    c.close()


def test_migration_9_moves_last_seen_into_trait(tmp_path: Path) -> None:
    path = tmp_path / "v8.db"
    c = sqlite3.connect(path, isolation_level=None)
    _apply(c, 8)
    c.execute("INSERT INTO subscriber(id, phone_e164, created_ms, last_seen_ms) VALUES "
              "(1, '+1', 0, 50), (2, '+2', 0, NULL), (3, '+3', 0, 70)")
    c.execute("INSERT INTO trait(subscriber_id, orders) VALUES (1, 4), (2, 1)")  # 3 has none
    c.close()
    with Store(path) as s:
        assert s.schema_version == len(MIGRATIONS) >= 9
        assert s.conn.execute("SELECT subscriber_id, orders, last_seen_ms FROM trait "
                              "ORDER BY 1").fetchall() == [(1, 4, 50), (2, 1, None), (3, 0, 70)]
        cols = {r[1] for r in s.conn.execute("PRAGMA table_info(subscriber)")}
        assert "last_seen_ms" not in cols and "created_ms" in cols
        assert s.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert s.conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_migration_11_moves_the_keyed_hash_into_a_side_table(tmp_path: Path) -> None:
    path = tmp_path / "v10.db"
    c = sqlite3.connect(path, isolation_level=None)
    _apply(c, 10)
    c.execute("INSERT INTO subscriber(id, phone_e164, created_ms, phone_hash) VALUES "
              "(1, '+1', 0, 'h1'), (2, '+2', 0, NULL), (3, '+3', 0, 'h3'), (4, '+4', 0, 'h3')")
    c.close()
    with Store(path) as s:
        conn = s.conn
        assert s.schema_version == len(MIGRATIONS) >= 11
        # a NULL hash gets no row; a (hand-made) duplicate keeps the first and the other
        # subscriber goes without, as if written without the key (the preview hashes it)
        assert conn.execute("SELECT subscriber_id, phone_hash FROM subscriber_hash "
                            "ORDER BY 1").fetchall() == [(1, "h1"), (3, "h3")]
        cols = {r[1] for r in conn.execute("PRAGMA table_info(subscriber)")}
        assert "phone_hash" not in cols and "phone_e164" in cols
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        for sql in ("SELECT subscriber_id FROM subscriber_hash WHERE phone_hash = 'h1'",
                    "SELECT 1 FROM subscriber_hash WHERE subscriber_id = 3"):
            plan = " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert "SEARCH" in plan and "SCAN" not in plan, (sql, plan)
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute("INSERT INTO subscriber_hash VALUES ('other', 1)")
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            conn.execute("INSERT INTO subscriber_hash VALUES ('h9', 9)")
        conn.execute("DELETE FROM subscriber WHERE id = 3")  # cascades
        assert conn.execute("SELECT subscriber_id FROM subscriber_hash").fetchall() == [(1,)]


def test_migration_13_keys_memberships_subscriber_first(tmp_path: Path) -> None:
    path = tmp_path / "v12.db"
    c = sqlite3.connect(path, isolation_level=None)
    _apply(c, 12)
    c.execute("INSERT INTO subscriber(id, phone_e164, created_ms) VALUES (1, '+1', 0), "
              "(2, '+2', 0)")
    c.execute("INSERT INTO segment(id, name, definition, created_ms) VALUES (1, 'a', '{}', 0), "
              "(2, 'b', '{}', 0)")
    c.execute("INSERT INTO segment_member VALUES (1, 2, 50, 1), (2, 1, 60, 3), (1, 1, 70, 1)")
    c.close()
    with Store(path) as s:
        conn = s.conn
        assert s.schema_version == len(MIGRATIONS) >= 13
        # same columns in the same order (positional inserts keep working), every row kept
        assert [r[1] for r in conn.execute("PRAGMA table_info(segment_member)")] == [
            "segment_id", "subscriber_id", "entered_ms", "version"]
        assert conn.execute("SELECT * FROM segment_member ORDER BY segment_id, "
                            "subscriber_id").fetchall() == [(1, 1, 70, 1), (1, 2, 50, 1),
                                                            (2, 1, 60, 3)]
        pk = [r[2] for r in conn.execute("PRAGMA index_info(sqlite_autoindex_segment_member_1)")]
        assert pk == ["subscriber_id", "segment_id"]
        assert {r[1] for r in conn.execute("PRAGMA index_list(segment_member)")} == {
            "sqlite_autoindex_segment_member_1"}  # no index by segment: see migration 13
        for sql in ("SELECT segment_id FROM segment_member WHERE subscriber_id = 1",
                    "SELECT 1 FROM segment_member WHERE subscriber_id = 1 AND segment_id = 2"):
            plan = " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert "USING" in plan and "SCAN" not in plan, (sql, plan)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute("INSERT INTO segment_member VALUES (2, 1, 80, 1)")
        # both cascades still hold
        conn.execute("DELETE FROM subscriber WHERE id = 2")
        conn.execute("DELETE FROM segment WHERE id = 2")
        assert conn.execute("SELECT * FROM segment_member").fetchall() == [(1, 1, 70, 1)]


def test_migration_14_never_reuses_membership_queue_ids(tmp_path: Path) -> None:
    path = tmp_path / "v13.db"
    c = sqlite3.connect(path, isolation_level=None)
    _apply(c, 13)
    c.execute("INSERT INTO subscriber(id, phone_e164, created_ms) VALUES (1, '+1', 0), "
              "(2, '+2', 0)")
    c.execute("INSERT INTO membership_queue(id, subscriber_id, types) VALUES (7, 1, 'purchase'), "
              "(9, 2, NULL)")
    c.close()
    with Store(path) as s:
        conn = s.conn
        assert s.schema_version == len(MIGRATIONS) >= 14
        assert [r[1] for r in conn.execute("PRAGMA table_info(membership_queue)")] == [
            "id", "subscriber_id", "types", "attributes"]
        assert conn.execute("SELECT * FROM membership_queue ORDER BY id").fetchall() == [
            (7, 1, "purchase", None), (9, 2, None, None)]
        # emptied, the queue goes on from the highest id it ever gave (plain rowids: from 1)
        conn.execute("DELETE FROM membership_queue")
        conn.execute("INSERT INTO membership_queue(subscriber_id) VALUES (2)")
        assert conn.execute("SELECT id FROM membership_queue").fetchall() == [(10,)]
        conn.execute("DELETE FROM subscriber WHERE id = 2")  # the cascade still holds
        assert conn.execute("SELECT count(*) FROM membership_queue").fetchone() == (0,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
