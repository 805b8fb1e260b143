"""Live segment membership: definitions, incremental re-evaluation, time-driven re-checks.

:class:`Membership` is a synchronous core that runs on the store's owner thread (the daemon
drives it from :mod:`segmentation.membership_live`). It keeps ``segment_member`` equal to
what a full evaluation of every segment's rule would give, recording every entry and exit in
``segment_transition`` with its cause (``../shared/reference/segmentation-compliance.md`` §5.4):

- **definition** — ``define`` stores a new version and recomputes the segment fully (diff
  applied as transitions), then every segment that depends on it, in dependency order.
- **event / attribute** — every writer, in any process, queues the subscribers it changed in
  ``membership_queue`` in its own transaction (ingest: one row per subscriber with the event
  types it got; attribute, profile and consent writes: the keys). ``drain`` takes the queued
  rows in its transaction (and deletes them there, so a crash or a failed batch loses
  nothing), marks each subscriber dirty for exactly the segments whose dependencies (event
  types, attribute keys, traits, profile fields, consent programs) the row names, and
  re-evaluates only those pairs with the incremental SQL, segments in topological order, so a
  change in segment A reaches a segment B = ``in_segment("A")`` in the same batch. The
  store's listener only tells this process's driver that work is waiting.
- **time** — a time-sensitive condition changes without new data only when now passes a
  stored time plus one of the rule's offsets (an event's ts + its window, a trait + N days,
  ...). ``process_due`` sweeps each such segment from ``segment.swept_ms`` to now: the
  subscribers with a time crossing in between (``compile_crossings``: index range scans) are
  re-evaluated, and ``swept_ms`` moves in the same transaction. Nothing is written per event
  or per pair for time (a per-pair due-time table cost ~95 us of ~310 per ingested event at
  1M subscribers). "Inactive for 30 days" starts when it becomes true, not at a nightly
  rebuild.
- **reconcile** — a full recompute compared with stored membership; drift is reported (and
  fixed on request, as transitions with cause ``reconcile``).
- **manual** — a segment of kind ``manual`` has no rule: its members are a list set with
  :meth:`Membership.set_manual_members` (replace, append or remove; transitions with cause
  ``manual``). Recompute, drain, re-checks and reconcile never evaluate it; segments that read
  it with ``in_segment`` are re-evaluated when the list changes.

``segment.member_count`` is maintained with every change, so stored counts are O(1).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable

from segmentation.daily import daily_mark, roll_up
from segmentation.membership_data import load_subscriber

# errors and results live in segmentation.membership_types; "X as X": callers import them
# from here too
from segmentation.membership_types import ANY_INBOUND, Cause, trigger_events, with_inbound
from segmentation.membership_types import BatchResult as BatchResult
from segmentation.membership_types import Diff as Diff
from segmentation.membership_types import Drift as Drift
from segmentation.membership_types import ExplainResult as ExplainResult
from segmentation.membership_types import MembershipStatistics as MembershipStatistics
from segmentation.membership_types import Prepared as Prepared
from segmentation.membership_types import SegmentCycleError as SegmentCycleError
from segmentation.membership_types import SegmentError as SegmentError
from segmentation.membership_types import SegmentInfo as SegmentInfo
from segmentation.membership_types import UnknownSegmentError as UnknownSegmentError
from segmentation.rules.ast import InSegment, Rule, dumps, loads, validate
from segmentation.rules.compile import (
    Deps,
    compile_count,
    compile_crossings,
    compile_select,
    dependencies,
)
from segmentation.rules.dsl import parse
from segmentation.rules.evaluate import explain
from segmentation.store import Change, Store

DIRTY = "temp.membership_dirty"
FRESH = "temp.membership_fresh"
BATCH = "temp.membership_batch"
STORED = "temp.membership_stored"
MANUAL_IDS = "temp.membership_manual"
CAUSES = ("event", "time", "definition", "manual", "attribute", "reconcile")
MANUAL_DEFINITION = '{"kind":"manual"}'
"""``segment.definition`` of a manual segment: a marker, never parsed as a rule tree."""
MANUAL_MODES = ("replace", "append", "remove")
QUEUE_CHUNK = 20_000
"""Most ``membership_queue`` rows one drain takes (see ``Membership._pull_queue``)."""
SWEEP_STEP_MS = 6 * 3_600_000
"""Longest time slice one ``process_due`` transaction sweeps: catching up after downtime
goes in slices, so no transaction holds the crossings of days at once."""

def _definition_key(seg: SegmentInfo) -> str:
    """What a prepared result was evaluated against: the version alone repeats when a
    dropped segment's id is given to a new one (version 1 again)."""
    return f"{seg.version}:{dumps(seg.rule)}"


class _BatchTaken(Exception):
    """Inside :meth:`Membership.commit`: another drain took the batch's queued rows."""


def _subscriber_id(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SegmentError(name, f"subscriber id {value!r} is not an integer")
    return value


def _check_name(name: str) -> None:
    if not name or len(name) > 200 or "\x00" in name:
        raise SegmentError(name, "a segment name is 1-200 characters")


class Membership:
    """The membership engine over one :class:`Store` (see the module docstring)."""

    def __init__(self, store: Store, *, on_dirty: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.conn = store.conn
        self.on_dirty = on_dirty
        for table in (DIRTY, FRESH, MANUAL_IDS, BATCH, STORED):
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {table}(id INTEGER PRIMARY KEY)")
        self._catalogue: dict[str, SegmentInfo] = {}
        self._signature: tuple[object, ...] | None = None
        self._dirty: dict[int, dict[int, Cause]] = {}
        self._dirty_subs: set[int] = set()
        self._triggers: dict[int, frozenset[str]] = {}
        self._dirty_loaded: frozenset[int] | None = None  # what DIRTY holds now
        self._queued_hint = 0
        self._remove_listener: Callable[[], None] | None = None
        self._batches = self._pairs = self._entered = self._exited = self._due = 0
        self._last_batch_ms = 0.0
        self._daily_mark: int | None = None

    # -- catalogue -----------------------------------------------------------------------------

    def _refresh(self, force: bool = False) -> dict[str, SegmentInfo]:
        """Re-read segment definitions when another connection changed them. The rows are
        read in one statement (one snapshot: a signature read apart from the rows could
        match a catalogue that missed a drop in between), and compared whole but for the
        live columns: a segment defined after the newest one was dropped takes its id (a
        plain rowid) at version 1, so neither counts and sums of ids and versions, nor the
        definitions without the names (segments rebuilt under each other's names), tell
        the catalogues apart. Rules are parsed only when they changed."""
        rows = self.conn.execute(
            "SELECT id, name, kind, status, version, member_count, definition, dsl_text, "
            "deps, created_ms, last_full_ms FROM segment ORDER BY id").fetchall()
        sig = tuple((r[0], r[1], r[2], r[4], r[6], r[7], r[8], r[9]) for r in rows)
        if force or sig != self._signature:
            cat = {}
            for row in rows:
                sid, name, kind, status, version, count, definition, text, deps, created, full = row
                # a manual segment's definition is a marker, not a rule tree (never parsed)
                rule = InSegment(name) if kind == "manual" else loads(definition)
                cat[name] = SegmentInfo(
                    sid, name, kind, status, version, count, rule, text,
                    Deps() if kind == "manual" else Deps.from_json(json.loads(deps)),
                    created, full,
                )
            self._catalogue, self._signature = cat, sig
            self._triggers = {}
        return self._catalogue

    def get(self, name: str) -> SegmentInfo:
        row = self.conn.execute(
            "SELECT member_count, status, last_full_ms, swept_ms FROM segment WHERE name = ?",
            (name,)).fetchone()
        if row is None:
            raise UnknownSegmentError(name, "no such segment")
        info = self._refresh()[name]
        return SegmentInfo(info.id, info.name, info.kind, row[1], info.version, int(row[0]),
                           info.rule, info.dsl_text, info.deps, info.created_ms,
                           row[2], row[3])

    def segments(self) -> list[SegmentInfo]:
        return [self.get(name) for name in sorted(self._refresh())]

    def count(self, name: str) -> int:
        """Stored member count: O(1), maintained with every change."""
        return self.get(name).member_count

    def count_rule(self, rule: Rule | str, now: int | None = None) -> int:
        """Count a draft rule (not stored) by running its compiled query over every subscriber."""
        tree = parse(rule) if isinstance(rule, str) else validate(rule)
        self._check_references("(draft)", tree)
        q = compile_count(tree, self.store.now_ms() if now is None else now)
        return int(self.conn.execute(q.sql, q.params).fetchone()[0])

    def members(self, name: str) -> list[int]:
        seg = self.get(name)
        return [int(r[0]) for r in self.conn.execute(
            "SELECT subscriber_id FROM segment_member WHERE segment_id = ? ORDER BY 1",
            (seg.id,))]

    def _order(self) -> list[SegmentInfo]:
        """Segments in dependency order: a segment after every segment it references."""
        cat = self._refresh()
        out: list[SegmentInfo] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen or name not in cat:
                return
            seen.add(name)
            for dep in sorted(cat[name].deps.segments):
                visit(dep)
            out.append(cat[name])

        for name in sorted(cat):
            visit(name)
        return out

    def _dependents(self, name: str) -> list[SegmentInfo]:
        """Segments that reference ``name`` directly or transitively, in dependency order."""
        affected = {name}
        out = []
        for seg in self._order():
            if seg.deps.segments & affected:
                affected.add(seg.name)
                out.append(seg)
        return out

    def _check_references(self, name: str, rule: Rule) -> None:
        cat = self._refresh()
        graph = {n: set(s.deps.segments) for n, s in cat.items()}
        graph[name] = set(dependencies(rule).segments)
        for ref in sorted(graph[name]):
            if ref not in cat and ref != name:
                raise UnknownSegmentError(ref, f"referenced by {name!r} but not defined")

        def walk(node: str, path: tuple[str, ...]) -> None:
            for nxt in sorted(graph.get(node, ())):
                if nxt == name:
                    raise SegmentCycleError(name, (*path, nxt))
                if nxt not in path:
                    walk(nxt, (*path, nxt))

        walk(name, (name,))

    # -- definitions -----------------------------------------------------------------------------

    def define(self, name: str, rule: Rule | str, *, kind: str = "dynamic") -> Diff:
        """Create or redefine a segment and recompute it (and its dependents) fully."""
        _check_name(name)
        if kind == "manual":
            raise SegmentError(name, "a manual segment has no rule: use define_manual")
        existing = self._refresh().get(name)
        if existing is not None and existing.manual:
            raise SegmentError(name, "is a manual segment (a list, not a rule); drop it first")
        text = rule if isinstance(rule, str) else None
        tree = parse(rule) if isinstance(rule, str) else validate(rule)
        self._check_references(name, tree)
        deps = dependencies(tree)
        now = self.store.now_ms()
        with self.store.atomic():
            row = self.conn.execute("SELECT id, version FROM segment WHERE name = ?",
                                    (name,)).fetchone()
            if row is None:
                self.conn.execute(
                    "INSERT INTO segment(name, definition, dsl_text, version, kind, status, deps,"
                    " created_ms) VALUES (?, ?, ?, 1, ?, 'evaluating', ?, ?)",
                    (name, dumps(tree), text, kind, json.dumps(deps.to_json()), now))
            else:
                self.conn.execute(
                    "UPDATE segment SET definition = ?, dsl_text = ?, version = version + 1, "
                    "kind = ?, status = 'evaluating', deps = ? WHERE id = ?",
                    (dumps(tree), text, kind, json.dumps(deps.to_json()), row[0]))
            seg = self._refresh(force=True)[name]
            diff = self._recompute(seg, now, ("definition", f"v{seg.version}"))
            for dep in self._dependents(name):
                self._recompute(dep, now, ("definition", f"{name} v{seg.version}"))
        return diff

    def drop(self, name: str) -> None:
        seg = self.get(name)
        users = [s.name for s in self._dependents(name)]
        if users:
            raise SegmentError(name, f"used by {', '.join(users)}")
        with self.store.atomic():
            self.conn.execute("DELETE FROM segment WHERE id = ?", (seg.id,))
        self._dirty.pop(seg.id, None)
        self._refresh(force=True)

    # -- manual segments -----------------------------------------------------------------------

    def define_manual(self, name: str) -> SegmentInfo:
        """Create an empty manual segment (idempotent: an existing one is returned as is)."""
        _check_name(name)
        existing = self._refresh().get(name)
        if existing is not None:
            if not existing.manual:
                raise SegmentError(name, f"already exists as a {existing.kind} segment")
            return self.get(name)
        now = self.store.now_ms()
        with self.store.atomic():
            self.conn.execute(
                "INSERT INTO segment(name, definition, dsl_text, version, kind, status, deps, "
                "created_ms, last_full_ms) VALUES (?, ?, NULL, 1, 'manual', 'ready', '{}', ?, ?)",
                (name, MANUAL_DEFINITION, now, now))
        self._refresh(force=True)
        return self.get(name)

    def set_manual_members(self, name: str, subscriber_ids: Iterable[int],
                           mode: str = "replace") -> Diff:
        """Change a manual segment's list: ``replace`` it, ``append`` to it or ``remove`` from
        it. Members, ``member_count`` and transitions (cause ``manual``, ref the mode) are
        written in one transaction, set-wise (a list may have a million ids); segments that
        read this one with ``in_segment`` are re-evaluated for the changed subscribers in the
        same transaction. Unknown subscriber ids raise :class:`SegmentError`, nothing written."""
        started = time.perf_counter()
        if mode not in MANUAL_MODES:
            raise SegmentError(name, f"mode {mode!r}: expected one of {', '.join(MANUAL_MODES)}")
        seg = self.get(name)
        if not seg.manual:
            raise SegmentError(name, f"is a {seg.kind} segment; only manual lists are set by hand")
        c = self.conn
        now = self.store.now_ms()
        cause: Cause = ("manual", mode)
        with self.store.atomic():
            c.execute(f"DELETE FROM {MANUAL_IDS}")
            c.executemany(f"INSERT OR IGNORE INTO {MANUAL_IDS}(id) VALUES (?)",
                          ((_subscriber_id(name, s),) for s in subscriber_ids))
            unknown = [int(r[0]) for r in c.execute(
                f"SELECT id FROM {MANUAL_IDS} WHERE id NOT IN (SELECT id FROM subscriber) "
                "ORDER BY id LIMIT 5")]
            if unknown:
                raise SegmentError(name, "no subscriber with id " + ", ".join(map(str, unknown)))
            member = ("EXISTS (SELECT 1 FROM segment_member m WHERE m.segment_id = ? "
                      "AND m.subscriber_id = {})")
            entered: list[int] = []
            exited: list[int] = []
            if mode in ("replace", "append"):
                entered = [int(r[0]) for r in c.execute(
                    f"SELECT id FROM {MANUAL_IDS} WHERE NOT {member.format('id')} ORDER BY id",
                    (seg.id,))]
            if mode == "replace":
                exited = [int(r[0]) for r in c.execute(
                    "SELECT subscriber_id FROM segment_member WHERE segment_id = ? AND "
                    f"subscriber_id NOT IN (SELECT id FROM {MANUAL_IDS}) ORDER BY 1", (seg.id,))]
            elif mode == "remove":
                exited = [int(r[0]) for r in c.execute(
                    f"SELECT id FROM {MANUAL_IDS} WHERE {member.format('id')} ORDER BY id",
                    (seg.id,))]
            self._apply(seg, entered, exited, now, dict.fromkeys(entered + exited, cause))
            dependents = self._dependents(name)
            if dependents and (entered or exited):
                changed = entered + exited
                for dep in dependents:
                    if name in dep.deps.segments:
                        self.mark_dirty(dep.id, changed, cause)
                # nested: the list and what follows from it commit (or fail) together
                self.drain(now)
        count = self.count(name)
        return Diff(name, len(entered), len(exited), count,
                    (time.perf_counter() - started) * 1000)

    def _apply(self, seg: SegmentInfo, entered: list[int], exited: list[int], now: int,
               causes: dict[int, Cause]) -> None:
        """Write entries and exits of one segment: members, transitions, count."""
        c = self.conn
        if entered:
            c.executemany("INSERT INTO segment_member(segment_id, subscriber_id, entered_ms, "
                          "version) VALUES (?, ?, ?, ?)",
                          [(seg.id, s, now, seg.version) for s in sorted(entered)])
        if exited:
            c.executemany("DELETE FROM segment_member WHERE segment_id = ? AND subscriber_id = ?",
                          [(seg.id, s) for s in sorted(exited)])
        if entered or exited:
            c.executemany(
                "INSERT INTO segment_transition(segment_id, subscriber_id, ts_ms, direction, "
                "cause, cause_ref) VALUES (?, ?, ?, ?, ?, ?)",
                [(seg.id, s, now, "enter", *causes[s]) for s in sorted(entered)]
                + [(seg.id, s, now, "exit", *causes[s]) for s in sorted(exited)])
            c.execute("UPDATE segment SET member_count = member_count + ? WHERE id = ?",
                      (len(entered) - len(exited), seg.id))

    # -- evaluation --------------------------------------------------------------------------------

    def _recompute(self, seg: SegmentInfo, now: int, cause: Cause) -> Diff:
        """Full evaluation of one segment; the diff becomes transitions (inside atomic())."""
        started = time.perf_counter()
        c = self.conn
        c.execute(f"DELETE FROM {FRESH}")
        q = compile_select(seg.rule, now)
        c.execute(f"INSERT INTO {FRESH}(id) {q.sql}", q.params)
        self._load_members(seg.id)
        entered = c.execute(
            "INSERT INTO segment_transition(segment_id, subscriber_id, ts_ms, direction, cause,"
            f" cause_ref) SELECT ?, id, ?, 'enter', ?, ? FROM {FRESH} "
            f"WHERE id NOT IN (SELECT id FROM {STORED})", (seg.id, now, *cause)).rowcount
        exited = c.execute(
            "INSERT INTO segment_transition(segment_id, subscriber_id, ts_ms, direction, cause,"
            f" cause_ref) SELECT ?, id, ?, 'exit', ?, ? FROM {STORED} "
            f"WHERE id NOT IN (SELECT id FROM {FRESH})", (seg.id, now, *cause)).rowcount
        # only the rows that change, each through the key
        c.execute(f"DELETE FROM segment_member WHERE segment_id = ? AND subscriber_id IN "
                  f"(SELECT id FROM {STORED} WHERE id NOT IN (SELECT id FROM {FRESH}))",
                  (seg.id,))
        c.execute(f"INSERT INTO segment_member(segment_id, subscriber_id, entered_ms, version) "
                  f"SELECT ?, id, ?, ? FROM {FRESH} WHERE id NOT IN (SELECT id FROM {STORED})",
                  (seg.id, now, seg.version))
        count = int(c.execute(f"SELECT COUNT(*) FROM {FRESH}").fetchone()[0])
        # every subscriber was evaluated at now: time crossings up to now are accounted for
        c.execute("UPDATE segment SET member_count = ?, status = 'ready', last_full_ms = ?, "
                  "swept_ms = ? WHERE id = ?", (count, now, now, seg.id))
        return Diff(seg.name, entered, exited, count, (time.perf_counter() - started) * 1000)

    def _select(self, seg: SegmentInfo, ids: frozenset[int], now: int) -> set[int]:
        """Which of ``ids`` the segment's rule selects at ``now`` (incremental SQL)."""
        c = self.conn
        if ids != self._dirty_loaded:  # segments of one batch mostly share the same set
            c.execute(f"DELETE FROM {DIRTY}")
            c.executemany(f"INSERT INTO {DIRTY}(id) VALUES (?)", ((s,) for s in sorted(ids)))
            self._dirty_loaded = ids
        q = compile_select(seg.rule, now, dirty=DIRTY, daily_mark=self._daily_mark)
        return {int(r[0]) for r in c.execute(q.sql, q.params)}

    def _evaluate(self, seg: SegmentInfo, subs: dict[int, Cause], now: int,
                  stored_of: dict[int, set[int]],
                  fresh: frozenset[int] | None = None) -> tuple[set[int], set[int]]:
        """Incremental evaluation of ``subs`` for one segment (inside atomic()) against the
        batch's stored memberships (``_load_stored``), which it keeps current. ``fresh``:
        the rule's result for ``subs``, evaluated already (``prepare``)."""
        ids = frozenset(subs)
        if fresh is None:
            fresh = frozenset(self._select(seg, ids, now))
        stored = stored_of.setdefault(seg.id, set())
        old = stored & ids
        entered, exited = set(fresh - old), old - fresh
        self._apply(seg, sorted(entered), sorted(exited), now, subs)
        stored |= entered
        stored -= exited
        return entered, exited

    def _load_members(self, segment_id: int) -> None:
        """A segment's stored members into STORED: one scan of segment_member (keyed
        subscriber first, schema 13), which a full recompute or a reconcile then compares
        with FRESH as often as it needs."""
        self.conn.execute(f"DELETE FROM {STORED}")
        self.conn.execute(f"INSERT INTO {STORED}(id) SELECT subscriber_id FROM segment_member "
                          "WHERE segment_id = ?", (segment_id,))

    def _load_stored(self) -> dict[int, set[int]]:
        """Every stored membership of the batch's dirty subscribers, in one read: a range of
        segment_member per subscriber (keyed subscriber first, schema 13), where a query
        per segment probed each (segment, subscriber) pair (~5 us per event at 1M
        subscribers), by segment id. Dependents get pairs of these same subscribers later in
        the batch, and each segment's own writes keep its set current (``_evaluate``)."""
        c = self.conn
        ids: set[int] = set()
        for subs in self._dirty.values():
            ids.update(subs)
        c.execute(f"DELETE FROM {BATCH}")
        c.executemany(f"INSERT INTO {BATCH}(id) VALUES (?)", ((s,) for s in sorted(ids)))
        stored: dict[int, set[int]] = {}
        for sub, seg in c.execute(f"SELECT m.subscriber_id, m.segment_id FROM {BATCH} b "
                                  "CROSS JOIN segment_member m ON m.subscriber_id = b.id"):
            stored.setdefault(int(seg), set()).add(int(sub))
        return stored

    # -- incremental driving ------------------------------------------------------------

    def attach(self) -> Callable[[], None]:
        """Listen to the store's committed changes; returns a function that stops listening."""
        if self._remove_listener is None:
            self._remove_listener = self.store.add_listener(self.on_change)
        return self.detach

    def detach(self) -> None:
        """Stop listening to the store."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None

    def on_change(self, change: Change) -> None:
        """Store listener, for this process's writes: they are in ``membership_queue`` already
        (queued in their own transaction); count them so the driver knows work is waiting."""
        if change.subscriber_ids:
            self._queued_hint += len(change.subscriber_ids)
            if self.on_dirty is not None:
                self.on_dirty(self.pending)

    def queue_waiting(self) -> bool:
        """Has any process queued changes not yet evaluated (``membership_queue``)?"""
        return bool(self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM membership_queue)").fetchone()[0])

    def _pull_queue(self) -> int:
        """Mark the subscribers queued by writers (this process or another) dirty for exactly
        the segments their changes can affect; returns the last row id taken (0: none). Runs
        inside the drain's transaction, which deletes those rows: a failed batch leaves them
        queued, and two processes never evaluate the same row twice. At most ``QUEUE_CHUNK``
        rows a batch: a large import is evaluated in batches of bounded size."""
        rows = self._queued_rows()
        if not rows:
            return 0
        self._dirty_subs.update(self._mark_rows(rows, self._dirty))
        return int(rows[-1][0])

    def _queued_rows(self) -> list[tuple[int, int, str | None, str | None]]:
        return [(int(i), int(s), t, k) for i, s, t, k in self.conn.execute(
            "SELECT id, subscriber_id, types, attributes FROM membership_queue ORDER BY id "
            "LIMIT ?", (QUEUE_CHUNK,))]

    def _mark_rows(self, rows: list[tuple[int, int, str | None, str | None]],
                   into: dict[int, dict[int, Cause]]) -> set[int]:
        """Mark queued rows' subscribers dirty in ``into``; returns those subscribers."""
        types_of: dict[int, set[str]] = {}
        keys_of: dict[int, set[str]] = {}
        for _, sid, types, keys in rows:
            if types:
                types_of.setdefault(sid, set()).update(types.split(","))
            if keys:
                keys_of.setdefault(sid, set()).update(keys.split(","))
        self._mark_changed(types_of, keys_of, into)
        return types_of.keys() | keys_of.keys()

    def _mark_changed(self, types_of: dict[int, set[str]], keys_of: dict[int, set[str]],
                      into: dict[int, dict[int, Cause]]) -> None:
        """Mark each changed subscriber dirty in ``into`` for the segments its change can
        move; a pair already there keeps its first cause."""
        # thousands of subscribers, but only a handful of distinct (types, keys) sets: match
        # each set against each segment's triggers once, not once per subscriber
        groups: dict[tuple[frozenset[str], frozenset[str]], list[int]] = {}
        for sid in sorted(types_of.keys() | keys_of.keys()):
            key = (frozenset(with_inbound(types_of.get(sid, set()))),
                   frozenset(keys_of.get(sid, set())))
            groups.setdefault(key, []).append(sid)
        for seg in self._refresh().values():
            if seg.manual:  # only set_manual_members changes a list
                continue
            triggers = self._triggers.get(seg.id)
            if triggers is None:
                triggers = self._triggers[seg.id] = trigger_events(seg.deps)
            by_cause: dict[Cause, list[int]] = {}
            for (type_set, keys), sids in groups.items():
                if "profile.created" in keys:  # a new subscriber: every segment may hold
                    by_cause.setdefault(("attribute", "profile.created"), []).extend(sids)
                    continue
                hit = type_set & triggers
                if hit:
                    named = sorted(hit - {ANY_INBOUND}) or sorted(type_set - {ANY_INBOUND})
                    by_cause.setdefault(("event", ",".join(named)), []).extend(sids)
                relevant = keys & seg.deps.keys
                if relevant:
                    by_cause.setdefault(("attribute", ",".join(sorted(relevant))),
                                        []).extend(sids)
            if not by_cause:
                continue
            bucket = into.setdefault(seg.id, {})
            for cause, sids in by_cause.items():
                for s in sids:
                    bucket.setdefault(s, cause)

    def mark_dirty(self, segment_id: int, subscriber_ids: Iterable[int], cause: Cause,
                   *, replace: bool = False, notify: bool = True) -> None:
        """Queue pairs for :meth:`drain`; a pair already queued keeps its first cause, unless
        ``replace``."""
        bucket = self._dirty.setdefault(segment_id, {})
        for s in subscriber_ids:
            if replace:
                bucket[s] = cause
            else:
                bucket.setdefault(s, cause)
            self._dirty_subs.add(s)
        if notify and self.on_dirty is not None:
            self.on_dirty(self.pending)

    @property
    def pending(self) -> int:
        """Distinct subscribers waiting for :meth:`drain` in this process, plus how many this
        process's writes queued since the last drain (an estimate: other processes' rows are
        not counted, :meth:`queue_waiting` sees them)."""
        return len(self._dirty_subs) + self._queued_hint

    def drain(self, now: int | None = None, *,
              before_commit: Callable[[], None] | None = None,
              take_queue: bool = True) -> BatchResult:
        """Re-evaluate every dirty (segment, subscriber) pair, in dependency order, in one
        transaction; entries and exits propagate to dependent segments in the same batch.
        ``before_commit`` runs inside that transaction (even when nothing is dirty).
        Queued changes (``membership_queue``, from any process) are taken in the same
        transaction, up to ``QUEUE_CHUNK`` rows, unless not ``take_queue``."""
        if not self._dirty and not (take_queue and self.queue_waiting()):
            if before_commit is not None:
                with self.store.atomic():
                    before_commit()
            return BatchResult(0, 0, 0, 0)
        started = time.perf_counter()
        now = self.store.now_ms() if now is None else now
        self._dirty_loaded = None
        # kept until COMMIT: a failed batch (database locked, ...) is retried whole later
        pending = {k: dict(v) for k, v in self._dirty.items()}
        try:
            counts = self._drain_in_transaction(now, before_commit, take_queue)
        except BaseException:
            self.give_back(pending)
            raise
        return self._counted(counts, started)

    def _counted(self, counts: tuple[int, int, int, int], started: float) -> BatchResult:
        """A committed batch's (segments, pairs, entered, exited), added to the statistics."""
        segments, pairs, entered_n, exited_n = counts
        self._batches += 1
        self._pairs += pairs
        self._entered += entered_n
        self._exited += exited_n
        self._last_batch_ms = (time.perf_counter() - started) * 1000
        return BatchResult(segments, pairs, entered_n, exited_n)

    def _drain_in_transaction(self, now: int, before_commit: Callable[[], None] | None,
                              take_queue: bool) -> tuple[int, int, int, int]:
        with self.store.atomic():
            # the definitions are read under the write lock: read before it, a definition
            # another process committed while this one waited for the lock was missed, and
            # the batch evaluated (and stored) the old rule
            order = self._order()
            self._queued_hint = 0
            taken = self._pull_queue() if take_queue else 0
            counts = self._evaluate_in_order(order, now, lambda _seg, _subs: (None, now))
            if taken:
                self.conn.execute("DELETE FROM membership_queue WHERE id <= ?", (taken,))
            if before_commit is not None:
                before_commit()
        return counts

    def _evaluate_in_order(
        self, order: list[SegmentInfo], now: int,
        how: Callable[[SegmentInfo, dict[int, Cause]], tuple[frozenset[int] | None, int]],
    ) -> tuple[int, int, int, int]:
        """Evaluate every dirty pair, segments in dependency order (inside atomic()): entries
        and exits reach the segments that read them in the same batch. ``how(seg, subs)``
        gives the rule's result when it is known already (else None) and the time the
        entries and exits are stamped with. Returns (segments, pairs, entered, exited)."""
        roll_up(self.store, now)  # after midnight: yesterday into event_daily, once
        self._daily_mark = daily_mark(self.store)
        stored_of = self._load_stored()
        segments = pairs = entered_n = exited_n = 0
        for seg in order:
            subs = self._dirty.pop(seg.id, None)
            if not subs or seg.manual:
                continue
            fresh, now = how(seg, subs)
            entered, exited = self._evaluate(seg, subs, now, stored_of, fresh)
            segments += 1
            pairs += len(subs)
            entered_n += len(entered)
            exited_n += len(exited)
            changed = entered | exited
            if changed:
                for dep in order:
                    if seg.name in dep.deps.segments:
                        bucket = self._dirty.setdefault(dep.id, {})
                        for s in changed:
                            bucket.setdefault(s, subs[s])
        self._dirty.clear()  # segments dropped meanwhile
        self._dirty_subs.clear()
        return segments, pairs, entered_n, exited_n

    # -- a batch evaluated on a second connection -------------------------------------------

    def take_pending(self) -> dict[int, dict[int, Cause]]:
        """Hand the pairs dirty in this process's memory to :meth:`prepare` (on another
        connection); :meth:`commit` gives them back if the batch cannot be written."""
        taken, self._dirty = self._dirty, {}
        self._dirty_subs = set()
        self._queued_hint = 0
        return taken

    def give_back(self, pairs: dict[int, dict[int, Cause]]) -> None:
        """Mark pairs dirty again (:meth:`take_pending`'s, when their batch was not written);
        a pair dirty already keeps its cause."""
        for seg_id, subs in pairs.items():
            bucket = self._dirty.setdefault(seg_id, {})
            for s, cause in subs.items():
                bucket.setdefault(s, cause)
            self._dirty_subs.update(subs)

    def prepare(self, carried: dict[int, dict[int, Cause]] | None = None,
                now: int | None = None) -> Prepared:
        """Evaluate the next batch on THIS connection in one read transaction, writing
        nothing but this connection's temporary tables: up to ``QUEUE_CHUNK`` queued rows
        plus ``carried`` (:meth:`take_pending` of the writer), each segment that reads no
        other segment evaluated for its pairs at ``now``.

        Meant for a second Membership on a connection and process of its own
        (:mod:`segmentation.membership_pipeline`), while the writer's connection goes on
        ingesting: the rule queries then run on another core, and the writer's
        :meth:`commit` does mostly the writing. A reader's page cache is emptied whenever the
        writer commits, so it is the reader that re-reads pages, never the writer (whose
        cache holds the hot B-tree pages)."""
        started = time.perf_counter()
        now = self.store.now_ms() if now is None else now
        carried = carried or {}
        pairs = {k: dict(v) for k, v in carried.items()}
        c = self.conn
        self._dirty_loaded = None
        c.execute("BEGIN")  # deferred: one snapshot for the queue, definitions and data
        try:
            order = self._order()
            rows = self._queued_rows()
            self._mark_rows(rows, pairs)
            self._daily_mark = daily_mark(self.store)
            fresh: dict[int, tuple[str, frozenset[int]]] = {}
            for seg in order:
                subs = pairs.get(seg.id)
                # pairs handed over from the writer's memory have no queued row whose
                # disappearance would tell commit that another drain evaluated them since:
                # the writer evaluates those segments itself
                if subs and not seg.manual and not seg.deps.segments and not carried.get(seg.id):
                    fresh[seg.id] = (_definition_key(seg),
                                     frozenset(self._select(seg, frozenset(subs), now)))
        finally:
            c.execute("COMMIT")  # ends the read snapshot (nothing was written)
        return Prepared(now, tuple(r[0] for r in rows), pairs, carried, fresh,
                        (time.perf_counter() - started) * 1000)

    def commit(self, prep: Prepared) -> BatchResult | None:
        """Write a batch :meth:`prepare` evaluated, in one transaction on this (the writer's)
        connection. Checked under the write lock, a segment's prepared result is used only
        while it still holds: the definition evaluated is current, no time sweep or recompute
        went past ``prep.now`` (``swept_ms``), and no pair was added since (a dependent's,
        or this process's own). Other segments, and those that read another segment (after
        what they read changed), are evaluated here. A prepared result holds only subscribers
        of the batch's queued rows (``prepare`` leaves segments with carried pairs to this
        side): erasing one deletes its rows (cascade), so such a batch is not written.

        Returns None, writing nothing, when another drain (another process, or this one's
        own :meth:`drain`) took some of the batch's queued rows first: the pairs handed over
        by :meth:`take_pending` are dirty again and the rest stays queued."""
        started = time.perf_counter()
        before = {k: dict(v) for k, v in self._dirty.items()}
        self.give_back(prep.pairs)
        self._dirty_loaded = None
        now = max(self.store.now_ms(), prep.now)
        try:
            with self.store.atomic():
                if not self._take_queued(prep.queue_ids):
                    raise _BatchTaken
                order = self._order()
                swept = {int(i): v for i, v in self.conn.execute(
                    "SELECT id, swept_ms FROM segment")}

                def how(seg: SegmentInfo,
                        subs: dict[int, Cause]) -> tuple[frozenset[int] | None, int]:
                    got = prep.fresh.get(seg.id)
                    seen = prep.pairs.get(seg.id, {})
                    at = swept.get(seg.id)
                    if (got is None or got[0] != _definition_key(seg)
                            or (at is not None and at > prep.now)
                            or any(s not in seen for s in subs)):
                        return None, now
                    return got[1], prep.now

                counts = self._evaluate_in_order(order, now, how)
        except BaseException as exc:
            self._dirty, self._dirty_subs = {}, set()
            self.give_back(before)
            self.give_back(prep.carried)
            if isinstance(exc, _BatchTaken):
                return None
            raise
        return self._counted(counts, started)

    def _take_queued(self, ids: tuple[int, ...]) -> bool:
        """Delete the queued rows a prepared batch took; False if some are gone (another
        drain took them). The batch took the lowest ids, and ids are never reused
        (AUTOINCREMENT, schema 14), so the range holds exactly its rows while none is gone."""
        if not ids:
            return True
        return self.conn.execute("DELETE FROM membership_queue WHERE id BETWEEN ? AND ?",
                                 (ids[0], ids[-1])).rowcount == len(ids)

    def process_due(self, now: int | None = None) -> BatchResult:
        """Re-evaluate the subscribers whose time-sensitive conditions may have flipped since
        each segment was last swept (cause ``time``, ref the sweep's end), moving
        ``swept_ms`` in the same transaction; after downtime in slices of ``SWEEP_STEP_MS``."""
        now = self.store.now_ms() if now is None else now
        segments = pairs = entered = exited = 0
        for _ in range(100_000):  # bounded: every round moves some swept_ms towards now
            plan = self._sweep_plan(now)
            if not plan:
                self._drop_spent_future(now)
                break
            for seg, since, until in plan:
                q = compile_crossings(seg.rule, since, until, future="event_future")
                if q is not None:
                    ids = [int(r[0]) for r in self.conn.execute(q.sql, q.params)]
                    self._due += len(ids)
                    self.mark_dirty(seg.id, ids, ("time", str(until)), replace=True)
            swept = [(until, seg.id) for seg, _, until in plan]

            def advance(swept: list[tuple[int, int]] = swept) -> None:
                self.conn.executemany("UPDATE segment SET swept_ms = ? WHERE id = ?", swept)
                # future-stamped events every time-sensitive segment has been swept past: the
                # ones not in the plan are swept to now already, so the least end is the mark
                self.conn.execute("DELETE FROM event_future WHERE ts_ms <= ?",
                                  (min(u for u, _ in swept),))

            # the sweep's end commits with its re-evaluation, or neither does (a failed batch
            # keeps its pairs dirty, and the next round finds the same crossings again). The
            # queue is left to the drains: one being evaluated apart (prepare) holds rows
            # that this transaction would take from under it.
            r = self.drain(now, before_commit=advance, take_queue=False)
            segments, pairs = segments + r.segments, pairs + r.pairs
            entered, exited = entered + r.entered, exited + r.exited
        return BatchResult(segments, pairs, entered, exited)

    def _drop_spent_future(self, now: int) -> None:
        """Every time-sensitive segment is swept to ``now`` (or there is none): the listed
        future-stamped events up to now are spent. Without this they stayed listed for as
        long as no time-sensitive segment existed (a later definition's full recompute counts
        them itself). Read first: the daemon calls this every second, mostly with nothing to
        drop, and a write transaction would take the lock for nothing."""
        if self.conn.execute("SELECT 1 FROM event_future WHERE ts_ms <= ? LIMIT 1",
                             (now,)).fetchone() is not None:
            with self.store.atomic():
                self.conn.execute("DELETE FROM event_future WHERE ts_ms <= ?", (now,))

    def _sweep_plan(self, now: int) -> list[tuple[SegmentInfo, int, int]]:
        """(segment, since, until) for every time-sensitive segment swept before ``now``."""
        swept = {int(i): None if v is None else int(v) for i, v in self.conn.execute(
            "SELECT id, COALESCE(swept_ms, last_full_ms) FROM segment")}
        plan = []
        for seg in self._order():
            since = swept.get(seg.id)
            if seg.manual or not seg.deps.time_sensitive or since is None or since >= now:
                continue  # (None: never computed; its first recompute sets swept_ms)
            plan.append((seg, since, min(now, since + SWEEP_STEP_MS)))
        return plan

    def statistics(self) -> MembershipStatistics:
        return MembershipStatistics(self._batches, self._pairs, self._entered, self._exited,
                                    self._due, len(self._dirty_subs), self._last_batch_ms)

    # -- reconcile and explain ----------------------------------------------------------

    def reconcile(self, *, fix: bool = False, now: int | None = None,
                  sample: int = 20) -> list[Drift]:
        """Compare a full recompute of every segment with stored membership (after applying
        pending changes and due re-checks); with ``fix``, apply the diff as transitions."""
        now = self.store.now_ms() if now is None else now
        self.drain(now)
        self.process_due(now)
        out = []
        with self.store.atomic():
            for seg in self._order():
                c = self.conn
                c.execute(f"DELETE FROM {FRESH}")
                self._load_members(seg.id)
                if seg.manual:  # the list is the truth: only its count can drift
                    c.execute(f"INSERT INTO {FRESH}(id) SELECT id FROM {STORED}")
                else:
                    q = compile_select(seg.rule, now)
                    c.execute(f"INSERT INTO {FRESH}(id) {q.sql}", q.params)
                missing = tuple(int(r[0]) for r in c.execute(
                    f"SELECT id FROM {FRESH} WHERE id NOT IN (SELECT id FROM {STORED}) "
                    "ORDER BY id"))
                extra = tuple(int(r[0]) for r in c.execute(
                    f"SELECT id FROM {STORED} WHERE id NOT IN (SELECT id FROM {FRESH}) "
                    "ORDER BY id"))
                stored = int(c.execute("SELECT member_count FROM segment WHERE id = ?",
                                       (seg.id,)).fetchone()[0])
                counted = int(c.execute(f"SELECT COUNT(*) FROM {FRESH}").fetchone()[0])
                drift = Drift(seg.name, missing[:sample], extra[:sample], stored, counted,
                              len(missing), len(extra))
                out.append(drift)
                if fix and not drift.clean:
                    if seg.manual:
                        c.execute("UPDATE segment SET member_count = ? WHERE id = ?",
                                  (counted, seg.id))
                    else:
                        self._recompute(seg, now, ("reconcile", None))
        return out

    def explain(self, subscriber_id: int, name: str, now: int | None = None) -> ExplainResult:
        """Why a subscriber is (or is not) in a segment: every node with the values read."""
        seg = self.get(name)
        data = load_subscriber(self.conn, subscriber_id)
        if data is None:
            raise SegmentError(name, f"no subscriber with id {subscriber_id}")
        now = self.store.now_ms() if now is None else now
        tree = explain(seg.rule, data, now)
        stored = self.conn.execute(
            "SELECT 1 FROM segment_member WHERE segment_id = ? AND subscriber_id = ?",
            (seg.id, subscriber_id)).fetchone() is not None
        return ExplainResult(subscriber_id, name, stored, tree.result, tree)

    def history(self, subscriber_id: int, name: str) -> list[tuple[int, str, str, str | None]]:
        """(ts_ms, direction, cause, cause_ref) of a subscriber's transitions in a segment."""
        seg = self.get(name)
        return [(int(ts), d, c, r) for ts, d, c, r in self.conn.execute(
            "SELECT ts_ms, direction, cause, cause_ref FROM segment_transition "
            "WHERE segment_id = ? AND subscriber_id = ? ORDER BY ts_ms, id",
            (seg.id, subscriber_id))]


def apply_queued(store: Store, *, now: int | None = None,
                 after_batch: Callable[[BatchResult], None] | None = None) -> BatchResult:
    """Evaluate every change queued for membership (all of ``membership_queue``, batch by
    batch), for a process that wrote and has no live driver: the CLI after an import or
    ``event add``. A running daemon would do it within a second anyway; doing it here makes
    the command's effect on segments visible when it returns, daemon or not. Both may drain
    at once: each batch takes its rows in its own transaction, so stopping between batches
    (``after_batch`` raising, Ctrl-C) leaves the rest queued and loses nothing."""
    m = Membership(store)
    segments = pairs = entered = exited = 0
    for _ in range(1_000_000):  # bounded: every batch deletes the rows it took
        if not m.queue_waiting():
            break
        r = m.drain(now)
        segments, pairs = segments + r.segments, pairs + r.pairs
        entered, exited = entered + r.entered, exited + r.exited
        if after_batch is not None:
            after_batch(r)
    return BatchResult(segments, pairs, entered, exited)


def queued_changes(store: Store) -> int:
    """Rows waiting in ``membership_queue`` (changes not yet evaluated, from any process)."""
    return int(store.scalar("SELECT count(*) FROM membership_queue"))
