"""Draft preview (matched / sendable / send-now) on a hand-checked fixture, an injected clock,
a Python model of the same rules, and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import pytest
from conftest import HASH_KEY, START_MS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.cli import main
from segmentation.consent import is_sendable, record_consent, suppress
from segmentation.membership import Membership
from segmentation.preview import (
    Group,
    PreviewError,
    QuietHours,
    in_quiet_hours,
    preview_rule,
    preview_segment,
    recipient_zones,
    summarise,
)
from segmentation.store import Store
from segmentation.subscribers import upsert_subscriber

HOUR = 3_600_000
T12 = START_MS  # 2026-01-15 12:00 UTC: London 12:00, New York 07:00, LA 04:00, Tokyo 21:00
RULE = 'not geo.country in ["FR"]'


def _grant(store: Store, number: str, action: str = "grant", ts: int = T12 - 10 * HOUR) -> None:
    record_consent(store, number, "marketing", action, "api", actor="test", ts_ms=ts)


def _fixture(store: Store) -> None:
    """Thirteen matched subscribers and one not matched (FR); the comment says why each counts
    where it does at T12 with quiet hours 21:00-08:00 and default zone UTC."""
    for n in ("+447911123456",   # a  London (4 UK zones, all UTC+0)  sendable, send now
              "+12125550101",    # b  New York 07:00                  sendable, quiet
              "+12125550102",    # c  granted then revoked            no consent
              "+12125550103",    # d  never asked                     no consent
              "+12125550104",    # e  suppressed (marketing)          suppressed
              "+12125550106",    # k  no zone, no country -> UTC      sendable, send now
              "+12125550108",    # l  suppressed for transactional    sendable, quiet
              "+12125550109",    # m  revoked then granted again      sendable, quiet
              "+12125550110",    # n  suppressed (all)                suppressed
              "+81312345678",    # g  Tokyo 21:00 (start inclusive)   sendable, quiet
              "+4930123456",     # h  no zone, country DE -> Berlin   sendable, send now
              "+12135550101",    # i  Los Angeles 04:00               sendable, quiet
              "+33123456789"):   # j  France: not matched
        upsert_subscriber(store, n)
        if n not in ("+12125550103", "+12125550109"):
            _grant(store, n)
    upsert_subscriber(store, "+12125550105", status="stopped")  # f  inactive
    _grant(store, "+12125550105")
    _grant(store, "+12125550102", "revoke", T12 - HOUR)
    _grant(store, "+12125550109", "revoke", T12 - 5 * HOUR)
    _grant(store, "+12125550109", "grant", T12 - HOUR)
    suppress(store, "+12125550104", "marketing", "complaint")
    suppress(store, "+12125550110", "all", "complaint")
    suppress(store, "+12125550108", "transactional", "test")
    store.conn.execute("UPDATE subscriber SET tz = NULL, tz_candidates = NULL "
                       "WHERE phone_e164 = '+4930123456'")
    store.conn.execute("UPDATE subscriber SET tz = NULL, tz_candidates = NULL, country = NULL "
                       "WHERE phone_e164 = '+12125550106'")


@pytest.fixture
def m(store: Store) -> Membership:
    _fixture(store)
    return Membership(store)


def _numbers(p: object) -> tuple[int, ...]:
    return tuple(getattr(p, k) for k in ("matched", "sendable", "send_now", "inactive",
                                         "no_consent", "suppressed", "quiet"))


def test_hand_checked_fixture_at_noon_utc(m: Membership) -> None:
    p = preview_rule(m, RULE, now=T12)
    # matched 13; not sendable: f (stopped), c d (consent), e n (suppressed); sendable 8
    # (a b g h i k l m); send now a h k; quiet b g i l m
    assert _numbers(p) == (13, 8, 3, 1, 2, 2, 5)
    assert p.to_json() == {
        "matched": 13, "sendable": 8, "send_now": 3,
        "excluded": {"inactive": 1, "no_consent": 2, "suppressed": 2, "quiet_hours": 5},
        "now_ms": T12, "quiet_hours": "21:00-08:00",
    }


def test_the_clock_moves_recipients_across_their_quiet_hours(m: Membership) -> None:
    # 13:00 UTC: New York 08:00 (end exclusive: allowed) -> b l m; Tokyo 22:00, LA 05:00 quiet
    assert preview_rule(m, RULE, now=T12 + HOUR).send_now == 6
    # 11:59 UTC: Tokyo 20:59 -> g allowed; New York 06:59 still quiet
    assert preview_rule(m, RULE, now=T12 - 60_000).send_now == 4
    # summer (daylight time): 2026-07-15 12:00 UTC is 08:00 in New York (EDT), 13:00 London
    july = int(dt.datetime(2026, 7, 15, 12, tzinfo=dt.UTC).timestamp() * 1000)
    assert preview_rule(m, RULE, now=july).send_now == 6


def test_settings_quiet_hours_and_default_zone(m: Membership) -> None:
    none = preview_rule(m, RULE, now=T12, quiet=QuietHours.parse("none"))
    assert none.send_now == none.sendable == 8
    # k has neither zone nor country: the default zone decides (Tokyo: 21:00, quiet)
    assert preview_rule(m, RULE, now=T12, default_tz="Asia/Tokyo").send_now == 2
    # a window that does not wrap, 11:00-12:30: only a (London 12:00) and k (UTC 12:00) are
    # inside it; Berlin 13:00, New York 07:00, Tokyo 21:00, LA 04:00 are outside
    narrow = preview_rule(m, RULE, now=T12, quiet=QuietHours.parse("11:00-12:30"))
    assert narrow.send_now == 8 - 2


def test_stored_segment_preview_reads_its_members(m: Membership) -> None:
    m.define("not_fr", RULE)
    assert _numbers(preview_segment(m, "not_fr", now=T12)) == \
        _numbers(preview_rule(m, RULE, now=T12))
    assert preview_rule(m, 'in_segment("not_fr") and geo.country in ["JP"]', now=T12).matched == 1


def test_unknown_segment_and_missing_hash_key_are_errors(m: Membership, tmp_path: Path) -> None:
    from segmentation.membership import UnknownSegmentError

    with pytest.raises(UnknownSegmentError):
        preview_rule(m, 'in_segment("nope")', now=T12)
    keyless = Store(m.store.path)
    try:
        with pytest.raises(PreviewError, match="hash key"):
            preview_rule(Membership(keyless), RULE, now=T12)
    finally:
        keyless.close()


# -- pure parts ----------------------------------------------------------------------------------


def test_quiet_hours_window() -> None:
    q = QuietHours.parse("21:00-08:00")
    assert [q.contains(dt.time(h, mi)) for h, mi in
            ((20, 59), (21, 0), (23, 59), (0, 0), (7, 59), (8, 0), (12, 0))] == \
        [False, True, True, True, True, False, False]
    day = QuietHours.parse("9:30-17:00")
    assert day.contains(dt.time(9, 30)) and not day.contains(dt.time(17, 0))
    assert not day.contains(dt.time(9, 29))
    assert str(q) == "21:00-08:00" and str(QuietHours.parse(" none ")) == "none"
    for bad in ("21-08", "25:00-08:00", "21:00", "21:00-8:60", ""):
        with pytest.raises(PreviewError):
            QuietHours.parse(bad)


@given(start=st.integers(0, 24 * 60 - 1), end=st.integers(0, 24 * 60 - 1),
       t=st.integers(0, 24 * 60 - 1))
def test_quiet_hours_match_a_minute_model(start: int, end: int, t: int) -> None:
    q = QuietHours(dt.time(start // 60, start % 60), dt.time(end // 60, end % 60))
    quiet_minutes = set()
    m = start
    while m != end:  # walk the clock from start to end (exclusive)
        quiet_minutes.add(m)
        m = (m + 1) % (24 * 60)
    assert q.contains(dt.time(t // 60, t % 60)) == (t in quiet_minutes)


def test_recipient_zones_precedence() -> None:
    cands = '["America/New_York", "America/Los_Angeles"]'
    assert recipient_zones("America/New_York", cands, "US", "UTC") == \
        ("America/New_York", "America/Los_Angeles")
    assert recipient_zones("Europe/Paris", None, "US", "UTC") == ("Europe/Paris",)
    assert recipient_zones(None, None, "DE", "UTC") == ("Europe/Berlin",)
    assert recipient_zones(None, None, None, "Asia/Tokyo") == ("Asia/Tokyo",)
    assert recipient_zones("Not/AZone", "not json", "XX", "UTC") == ("UTC",)
    # ambiguous numbers: quiet when quiet in any candidate (the strictest window)
    at = START_MS + 3 * HOUR  # 15:00 UTC: New York 10:00, Los Angeles 07:00
    assert in_quiet_hours(("America/Los_Angeles", "America/New_York"), at, QuietHours())
    assert not in_quiet_hours(("America/New_York",), at, QuietHours())


def test_summarise_counts_each_reason_once() -> None:
    groups = [Group("Europe/London", None, "GB", 0, 5), Group("Asia/Tokyo", None, "JP", 0, 2),
              Group(None, None, None, 1, 3), Group("Europe/London", None, "GB", 2, 4),
              Group("Asia/Tokyo", None, "JP", 3, 1)]
    p = summarise(groups, T12, QuietHours())
    assert _numbers(p) == (15, 7, 5, 3, 4, 1, 2)


# -- the SQL path against a per-subscriber Python model ------------------------------------------

_NUMBERS = [f"+121255501{i:02d}" for i in range(1, 9)]
_ZONES = (None, "America/New_York", "Asia/Tokyo", "Europe/London", "Australia/Sydney")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    people=st.lists(st.tuples(
        st.sampled_from(("active", "active", "stopped", "invalid")),
        st.lists(st.sampled_from(("grant", "revoke")), max_size=3),
        st.sampled_from((None, "marketing", "transactional", "all")),
        st.sampled_from(_ZONES), st.sampled_from((None, "US", "JP")),
    ), min_size=1, max_size=len(_NUMBERS)),
    now=st.integers(T12 - 48 * HOUR, T12 + 48 * HOUR),
    quiet=st.sampled_from(("21:00-08:00", "none", "08:00-21:00", "22:30-07:15")),
)
def test_sql_path_equals_a_per_subscriber_model(
    people: list[tuple[str, list[str], str | None, str | None, str | None]],
    now: int, quiet: str,
) -> None:
    q = QuietHours.parse(quiet)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "p.db", clock=lambda: T12, hash_key=HASH_KEY)
        try:
            expected = [0, 0, 0]
            for number, (status, actions, sup, tz, country) in zip(_NUMBERS, people,
                                                                   strict=False):
                sid = upsert_subscriber(store, number, status=status)
                for i, action in enumerate(actions):
                    _grant(store, number, action, T12 - 10 * HOUR + i)
                if sup:
                    suppress(store, number, sup, "test")
                store.conn.execute("UPDATE subscriber SET tz = ?, tz_candidates = NULL, "
                                   "country = ? WHERE id = ?", (tz, country, sid))
                if country == "JP":  # the rule leaves them out
                    continue
                expected[0] += 1
                if status != "active" or not is_sendable(store, number, "marketing"):
                    continue
                expected[1] += 1
                if not in_quiet_hours(recipient_zones(tz, None, country, "UTC"), now, q):
                    expected[2] += 1
            p = preview_rule(Membership(store), 'not geo.country in ["JP"]', now=now, quiet=q)
            assert (p.matched, p.sendable, p.send_now) == tuple(expected)
        finally:
            store.close()


# -- suppression through the stored keyed hash (subscriber_hash, schema 11) ----------------------


def _count_python_hashing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the numbers the preview hashes in Python (the per-row fallback)."""
    import segmentation.preview as preview_module

    hashed: list[str] = []
    real = preview_module.number_hash

    def counting(key: bytes, e164: str) -> str:
        hashed.append(e164)
        return real(key, e164)

    monkeypatch.setattr(preview_module, "number_hash", counting)
    return hashed


def test_stored_hashes_decide_in_sql_and_only_unhashed_rows_are_hashed_in_python(
        m: Membership, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed = _count_python_hashing(monkeypatch)
    assert m.conn.execute("SELECT COUNT(*) FROM subscriber WHERE id NOT IN "
                          "(SELECT subscriber_id FROM subscriber_hash)").fetchone() == (0,)
    expected = (13, 8, 3, 1, 2, 2, 5)
    assert _numbers(preview_rule(m, RULE, now=T12)) == expected
    assert hashed == []
    # e (suppressed) and a (sendable) without a stored hash: those two, and only they
    m.conn.execute("DELETE FROM subscriber_hash WHERE subscriber_id IN (SELECT id FROM "
                   "subscriber WHERE phone_e164 IN ('+12125550104', '+447911123456'))")
    assert _numbers(preview_rule(m, RULE, now=T12)) == expected
    # (SQLite evaluates a grouped row's expressions again for each group's first row, so a
    # number may be hashed twice; the set is what matters)
    assert set(hashed) == {"+12125550104", "+447911123456"}
    # no stored hash at all: every active, consented, matched number (as before schema 10)
    hashed.clear()
    m.conn.execute("DELETE FROM subscriber_hash")
    assert _numbers(preview_rule(m, RULE, now=T12)) == expected
    assert len(set(hashed)) == 8 + 2
    # the list is read afresh by each preview: a number suppressed since then is seen
    suppress(m.store, "+447911123456", "marketing", "complaint")
    assert preview_rule(m, RULE, now=T12).suppressed == 3


def test_the_stored_hash_is_trusted_to_be_under_the_configured_key(m: Membership) -> None:
    # A row hashed under another key is not found on the list (changing the key is not
    # supported); rehashing every row under the configured key puts it right.
    from segmentation.consent import number_hash
    from segmentation.subscribers import fill_phone_hashes

    m.conn.execute("UPDATE subscriber_hash SET phone_hash = ? WHERE subscriber_id = "
                   "(SELECT id FROM subscriber WHERE phone_e164 = '+12125550104')",
                   (number_hash(b"another-key", "+12125550104"),))
    assert preview_rule(m, RULE, now=T12).suppressed == 1
    assert fill_phone_hashes(m.store, every=True).changed == 1
    assert _numbers(preview_rule(m, RULE, now=T12)) == (13, 8, 3, 1, 2, 2, 5)


def _preview_plan(m: Membership) -> str:
    """The query plan of the grouped pass a segment preview runs (its statement, traced)."""
    statements: list[str] = []
    m.conn.set_trace_callback(statements.append)
    try:
        preview_segment(m, "not_fr", now=T12)
    finally:
        m.conn.set_trace_callback(None)
    (sql,) = [s for s in statements if "GROUP BY" in s]
    return "\n".join(r[3] for r in m.conn.execute(f"EXPLAIN QUERY PLAN {sql}"))


def test_suppressed_ids_come_from_the_list_through_the_side_tables_key(
        m: Membership, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed = _count_python_hashing(monkeypatch)
    m.define("not_fr", RULE)
    # one primary-key probe of subscriber_hash per listed hash, never a walk of it, and with
    # every subscriber hashed no per-row "has it a hash?" probe either
    plan = _preview_plan(m)
    assert "SEARCH h USING PRIMARY KEY (phone_hash=?)" in plan, plan
    assert "SCAN h" not in plan and "(subscriber_id=?)" not in plan, plan
    assert preview_segment(m, "not_fr", now=T12).suppressed == 2
    # one subscriber without a hash: the probe is back, and only that number is hashed
    m.conn.execute("DELETE FROM subscriber_hash WHERE subscriber_id = "
                   "(SELECT id FROM subscriber WHERE phone_e164 = '+12125550110')")
    plan = _preview_plan(m)
    assert "SEARCH h USING COVERING INDEX" in plan and "(subscriber_id=?)" in plan, plan
    assert "SCAN h" not in plan, plan
    hashed.clear()
    assert preview_segment(m, "not_fr", now=T12).suppressed == 2
    assert set(hashed) == {"+12125550110"}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    people=st.lists(st.tuples(
        st.sampled_from(("active", "active", "stopped")),
        st.sampled_from((None, "grant", "revoke")),
        st.sampled_from((None, "marketing", "transactional", "all")),
        st.booleans(),  # stored hash kept (else its side row deleted: hashed in Python)
    ), min_size=1, max_size=len(_NUMBERS)),
)
def test_mixed_stored_and_missing_hashes_equal_a_per_subscriber_model(
    people: list[tuple[str, str | None, str | None, bool]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "h.db", clock=lambda: T12, hash_key=HASH_KEY)
        try:
            expected = [0, 0]  # sendable, suppressed
            for number, (status, action, sup, kept) in zip(_NUMBERS, people, strict=False):
                upsert_subscriber(store, number, status=status)
                if action:
                    _grant(store, number, action)
                if sup:
                    suppress(store, number, sup, "test")
                if not kept:
                    store.conn.execute("DELETE FROM subscriber_hash WHERE subscriber_id = "
                                       "(SELECT id FROM subscriber WHERE phone_e164 = ?)",
                                       (number,))
                if status != "active" or action != "grant":
                    continue
                expected[sup in ("marketing", "all")] += 1
            p = preview_rule(Membership(store), 'not geo.country in ["JP"]', now=T12)
            assert (p.sendable, p.suppressed) == tuple(expected)
        finally:
            store.close()


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_preview(store: Store, capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    _fixture(store)
    monkeypatch.setenv("SMSGATE_HASH_KEY", HASH_KEY.decode())
    db = store.path
    at = "2026-01-15T12:00:00Z"
    code = main(["segment", "count", RULE, "--preview", "--json", "--at", at, "--db", db])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (out["rule"], out["count"], out["source"]) == (RULE, 13, "query")
    assert out["preview"]["sendable"] == 8 and out["preview"]["send_now"] == 3
    code = main(["segment", "count", RULE, "--preview", "--at", at, "--quiet-hours", "none",
                 "--db", db])
    text = capsys.readouterr().out
    assert code == 0 and "send now:  8" in text and "matched:   13" in text
    # without --preview the count and its JSON shape are unchanged
    code = main(["segment", "count", RULE, "--json", "--db", db])
    assert code == 0 and set(json.loads(capsys.readouterr().out)) == {"rule", "count", "source",
                                                                      "ms"}
    main(["segment", "define", "not_fr", RULE, "--db", db])
    capsys.readouterr()
    code = main(["segment", "count", "not_fr", "--preview", "--json", "--at", at, "--db", db])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["source"] == "stored" and out["preview"]["send_now"] == 3
    for bad in (["--quiet-hours", "9pm-8am"], ["--default-tz", "Mars/Olympus"],
                ["--at", "yesterday"]):
        code = main(["segment", "count", RULE, "--preview", *bad, "--db", db])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("smsgate: "), (bad, err)
