"""Export and erasure of one number across the whole database file (GDPR Art. 15 / 17).

The segment store and the daemon share one SQLite file (DESIGN.md), so a number lives in both:
the segment store's subscriber, attributes, events and consent ledger
(:mod:`segmentation.privacy`), the outbox (messages to it, their parts and history:
:mod:`gateway.outbox_erase`), the inbox (texts from it: :mod:`gateway.inbox`) and the SMPP
multipart parts still waiting for the rest of their message (:mod:`gateway.mo_store`).
:func:`erase_number` removes all of them in ONE write transaction on the segment store's
connection: another process (the daemon, the TUI) sees the number's data all there or all
gone, never half. What survives, and why, is in ``docs/privacy.md``: the keyed-hash
suppression row, the consent ledger under that hash (legal evidence, 5 years), and counts.

How a number is written differs per table, so each table is searched in the forms it can
hold (:func:`address_forms`): the outbox only takes E.164; the inbox keeps a sender as
E.164 or, for an address without a country code, ``+`` and the digits as received; SMPP
source addresses are digits with or without the country code.

Physical remnants: the transaction runs with ``PRAGMA secure_delete=ON`` (deleted and
overwritten records are zeroed, not just unlinked), then the WAL is checkpointed and truncated
so old page images of the erased rows do not linger in ``-wal``. Copies that other connections
left in free space earlier are zeroed only if their SQLite was built with
``SQLITE_SECURE_DELETE`` (Debian's is); ``vacuum=True`` rewrites the whole file to be sure.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from gateway.inbox import e164 as inbox_address
from gateway.inbox import erase_inbox, export_inbox
from gateway.mo_store import erase_parts, export_parts
from gateway.outbox_erase import (
    NOTHING,
    OutboxErasure,
    add_to_tally,
    erase_messages,
    export_messages,
)
from segmentation.phones import PhoneError, normalise
from segmentation.privacy import (
    ErasureReport,
    PrivacyError,
    erase_segment_data,
    export_segment_data,
)
from segmentation.store import Store


@dataclass(frozen=True, slots=True)
class NumberForms:
    """A number as each kind of column may hold it."""

    e164: str
    destinations: frozenset[str]  # outbox_message.dest (validated E.164 only)
    senders: frozenset[str]  # inbox_message.sender, mo_pending_part.source_addr


@dataclass(frozen=True, slots=True)
class NumberErasure:
    """What :func:`erase_number` did (no number in it: only its keyed hash)."""

    number_hash: str
    segment: ErasureReport
    outbox: OutboxErasure = NOTHING
    inbox_messages: int = 0
    mo_groups: int = 0
    mo_parts: int = 0
    wal_truncated: bool = False  # False: a reader kept old WAL frames; gone at the next restart
    vacuumed: bool = False
    removed: tuple[tuple[str, int], ...] = field(default=())  # (table, rows deleted), > 0 only

    @property
    def found_anything(self) -> bool:
        return (self.segment.found_anything or self.outbox.messages > 0
                or self.inbox_messages > 0 or self.mo_parts > 0)


def address_forms(e164: str) -> NumberForms:
    """The spellings of ``e164`` in address columns (see the module docstring)."""
    digits = e164.removeprefix("+")
    senders = {e164, digits, "00" + digits}
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None:
        nsn = phonenumbers.national_significant_number(parsed)
        national = "".join(ch for ch in phonenumbers.format_number(
            parsed, phonenumbers.PhoneNumberFormat.NATIONAL) if ch.isdigit())
        senders.update({nsn, national} - {""})
    # inbox.e164() stores an address without '+' as '+' and its digits, whatever they were
    # (a national number, '00' and the country code): those spellings are in the inbox too.
    senders.update({inbox_address(form) for form in senders})
    return NumberForms(e164, frozenset({e164}), frozenset(senders))


def resolve(store: Store, number: str) -> str:
    """``number`` as E.164: validated by the segment store's rules, or, for a number they reject
    (a test range, a number issued after the metadata), as written when it is ``+`` and digits
    -- the inbox and the outbox store such numbers too, and they must be erasable."""
    try:
        return normalise(number, store.default_region)
    except PhoneError:
        text = "".join(ch for ch in number.strip() if ch not in " -().")
        if text.startswith("+") and text[1:].isdigit() and 6 <= len(text) <= 16:
            return text
        raise


@contextmanager
def _read(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: an export is a consistent snapshot across tables."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def export_number(store: Store, number: str) -> dict[str, Any]:
    """Everything the file holds about ``number``: :func:`segmentation.privacy.export_subscriber`'s
    keys, plus ``outbox_messages`` (messages to it, with parts and history), ``inbox_messages``
    (texts from it) and ``pending_mo_parts`` (parts of texts from it still being reassembled).

    Raises :class:`PrivacyError` when none of them holds anything.
    """
    e164 = resolve(store, number)
    forms = address_forms(e164)
    conn = store.conn
    with _read(conn):
        out = export_segment_data(store, e164)
        out["outbox_messages"] = export_messages(conn, forms.destinations)
        out["inbox_messages"] = export_inbox(conn, forms.senders)
        out["pending_mo_parts"] = export_parts(conn, forms.senders)
    if out["profile"] is None and not any(
            out[k] for k in ("consent", "outbox_messages", "inbox_messages", "pending_mo_parts")):
        raise PrivacyError(e164, "no subscriber and no consent records, and no messages to "
                                 "or from it")
    return out


def erase_number(store: Store, number: str, *, reason: str = "erasure",
                 vacuum: bool = False) -> NumberErasure:
    """Erase ``number`` from every table of the file in one transaction (module docstring).

    Raises :class:`PrivacyError` (and changes nothing) when nothing was stored and the number
    was already suppressed; :class:`segmentation.store.StoreError` without the hash key.
    """
    e164 = resolve(store, number)
    forms = address_forms(e164)
    conn = store.conn
    previous = int(conn.execute("PRAGMA secure_delete").fetchone()[0])
    conn.execute("PRAGMA secure_delete = ON")
    try:
        with store.atomic():
            segment = erase_segment_data(store, e164, reason=reason)
            outbox = erase_messages(conn, forms.destinations)
            inbox = erase_inbox(conn, forms.senders)
            if inbox:
                add_to_tally(conn, [(day, "inbox", -1, action, 0, n, n)
                                    for day, action, n in inbox])
            mo_groups, mo_parts = erase_parts(conn, forms.senders)
            report = NumberErasure(segment.number_hash, segment, outbox,
                                   sum(n for _, _, n in inbox), mo_groups, mo_parts)
            if not report.found_anything:
                raise PrivacyError(e164, "nothing stored for this number")
        vacuumed = vacuum and _vacuum(conn)
        truncated = _truncate_wal(conn)
    finally:
        conn.execute(f"PRAGMA secure_delete = {previous}")
    removed = dict(segment.removed)
    removed.update({
        "outbox_message": outbox.messages, "outbox_part": outbox.parts,
        "outbox_history": outbox.history, "outbox_report_pending": outbox.pending_reports,
        "inbox_message": report.inbox_messages, "mo_pending_group": mo_groups,
        "mo_pending_part": mo_parts,
    })
    return NumberErasure(
        report.number_hash, segment, outbox, report.inbox_messages, mo_groups, mo_parts,
        wal_truncated=truncated, vacuumed=vacuumed,
        removed=tuple(sorted((t, n) for t, n in removed.items() if n > 0)),
    )


CHECKPOINT_WAIT_MS = 250
"""How long the WAL truncation waits for other processes' readers. While it waits it holds
off the daemon's writers too (a TRUNCATE checkpoint blocks them), so briefly: when the
daemon is busy the truncation is skipped, and the old frames go at the next WAL restart (the
first commit after it trims the file: journal_size_limit=0, segmentation.checkpoint)."""


def _truncate_wal(conn: sqlite3.Connection) -> bool:
    """Checkpoint and truncate the WAL (old page images of the erased rows); False when
    another process's reader or writer kept it from finishing within the wait."""
    (timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
    conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    except sqlite3.OperationalError:
        busy = 1
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
    return int(busy) == 0


def _vacuum(conn: sqlite3.Connection) -> bool:
    """Rewrite the file (no free space left holding old copies); False when another process
    holds the database (the daemon running): the erasure itself is committed either way."""
    try:
        conn.execute("VACUUM")
    except sqlite3.OperationalError:
        return False
    return True


def report_json(report: NumberErasure) -> dict[str, Any]:
    """The report as one JSON object (``smsgate subscriber erase --json``)."""
    seg = report.segment
    return {
        "number_hash": report.number_hash,
        "subscriber_id": seg.subscriber_id,
        "events": seg.events, "attributes": seg.attributes, "memberships": seg.memberships,
        "consent_rows_pseudonymised": seg.consent_rows_pseudonymised,
        "suppression_added": seg.suppression_added,
        "removed": dict(report.removed),
        "outbox_cancelled": report.outbox.cancelled,
        "outbox_in_flight": report.outbox.in_flight,
        "wal_truncated": report.wal_truncated, "vacuumed": report.vacuumed,
    }
