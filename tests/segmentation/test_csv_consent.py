"""Consent from a CSV import never outranks a STOP it cannot prove came later (audit 6,
finding 7): an undated grant after a revoke is refused, a dated grant newer than the revoke is
evidence of a re-opt-in, a future consent time is refused, and ``status=active`` does not
reactivate a stopped subscriber on its own."""

from __future__ import annotations

from pathlib import Path

from segmentation.consent import (
    consent_history,
    current_consent,
    is_sendable,
    record_consent,
    set_status_for_keyword,
)
from segmentation.csvio import RowError, import_subscribers
from segmentation.store import Store
from segmentation.subscribers import upsert_subscriber
from tests.segmentation.conftest import START_MS, ManualClock

N = "+12125550101"
DAY = 86_400_000


def _import(store: Store, tmp_path: Path, text: str, name: str = "s.csv") -> list[str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    errors: list[RowError] = []
    import_subscribers(store, path, on_error=errors.append)
    return [str(e) for e in errors]


def _stop(store: Store, clock: ManualClock) -> None:
    """What the daemon does on an inbound STOP: the ledger row and the status, together."""
    with store.atomic():
        record_consent(store, N, "marketing", "revoke", "keyword", actor="inbound",
                       keyword_text="STOP")
        set_status_for_keyword(store, N, "revoke")
    clock.advance(DAY)


def _status(store: Store) -> str:
    return str(store.scalar("SELECT status FROM subscriber WHERE phone_e164 = ?", (N,)))


def test_an_undated_grant_cannot_override_a_stop(
    store: Store, clock: ManualClock, tmp_path: Path
) -> None:
    assert _import(store, tmp_path, f"phone,consent_program\n{N},marketing\n") == []
    _stop(store, clock)
    assert not is_sendable(store, N, "marketing")
    # a second file, content changed (the disclosure), no consent_time, status active
    errors = _import(store, tmp_path, "phone,consent_program,consent_disclosure,status\n"
                     f"{N},marketing,new text,active\n", "again.csv")
    assert len(errors) == 1 and errors[0].startswith(
        "row 2, column consent_time: a grant without a time cannot override the marketing "
        "revoke of 2026-01-15T12:00:00+00:00 (keyword)")
    assert not is_sendable(store, N, "marketing")
    assert _status(store) == "stopped"
    assert [e.action for e in consent_history(store, N)] == ["grant", "revoke"]


def test_re_importing_the_first_file_after_a_stop_is_unchanged_not_refused(
    store: Store, clock: ManualClock, tmp_path: Path
) -> None:
    text = f"phone,consent_program\n{N},marketing\n"
    _import(store, tmp_path, text)
    _stop(store, clock)
    assert _import(store, tmp_path, text) == []  # the same row: already recorded
    assert not is_sendable(store, N, "marketing")
    assert len(consent_history(store, N)) == 2


def test_an_undated_grant_is_stamped_at_import_and_says_so(
    store: Store, tmp_path: Path
) -> None:
    assert _import(store, tmp_path, f"phone,consent_program\n{N},marketing\n") == []
    c = current_consent(store, N, "marketing")
    assert c is not None and c.ts_ms == START_MS and c.evidence is not None
    assert c.evidence["undated"] is True


def test_a_dated_grant_newer_than_the_stop_is_a_re_opt_in(
    store: Store, clock: ManualClock, tmp_path: Path
) -> None:
    upsert_subscriber(store, N)
    _stop(store, clock)  # STOP at 2026-01-15T12:00Z, clock now a day later
    older = _import(store, tmp_path, "phone,consent_program,consent_time,status\n"
                    f"{N},marketing,2026-01-10,active\n", "older.csv")
    # recorded as history (it happened), but the STOP stays current and the status stays
    assert len(older) == 1 and older[0].startswith("row 2, column status: active refused")
    assert not is_sendable(store, N, "marketing") and _status(store) == "stopped"
    no_status = _import(store, tmp_path, "phone,consent_program,consent_time\n"
                        f"{N},marketing,2026-01-10\n", "older2.csv")
    assert no_status == [] and not is_sendable(store, N, "marketing")
    newer = _import(store, tmp_path, "phone,consent_program,consent_time,status\n"
                    f"{N},marketing,2026-01-16T08:00:00Z,active\n", "newer.csv")
    assert newer == []
    assert is_sendable(store, N, "marketing") and _status(store) == "active"


def test_status_active_alone_does_not_reactivate_a_stopped_subscriber(
    store: Store, clock: ManualClock, tmp_path: Path
) -> None:
    record_consent(store, N, "marketing", "grant", "web_form", actor="api")
    upsert_subscriber(store, N, status="stopped")  # stopped by an operator, ledger says grant
    errors = _import(store, tmp_path, f"phone,status\n{N},active\n")
    assert errors == ["row 2, column status: a stopped subscriber is made active only with a "
                      "marketing grant (consent columns) in the same row"]
    assert _status(store) == "stopped"
    # a new number whose latest consent is a STOP (received before we knew it) stays stopped
    other = "+13125550103"
    record_consent(store, other, "marketing", "revoke", "keyword", actor="inbound",
                   keyword_text="STOP")
    errors = _import(store, tmp_path, f"phone,status\n{other},active\n", "new.csv")
    assert len(errors) == 1 and "active refused" in errors[0]
    assert store.scalar("SELECT count(*) FROM subscriber WHERE phone_e164 = ?", (other,)) == 0


def test_a_consent_time_in_the_future_is_refused(store: Store, tmp_path: Path) -> None:
    errors = _import(store, tmp_path, "phone,consent_program,consent_time\n"
                     f"{N},marketing,2026-01-15T12:00:01Z\n{N},marketing,2026-01-15T12:00:00Z\n")
    assert len(errors) == 1 and errors[0].startswith(
        "row 2, column consent_time: '2026-01-15T12:00:01Z' is in the future")
    assert [e.ts_ms for e in consent_history(store, N)] == [START_MS]
