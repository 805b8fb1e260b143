"""Pure parsers/choices over AT answers, and inbound reassembly (Hypothesis: any order)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from drivers.modem.reassembly import InboundPart, Reassembler
from drivers.modem.responses import (
    Registration,
    choose_storages,
    cnmi_candidates,
    parse_cmgl,
    parse_creg,
    parse_csq,
    parse_groups,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_parse_groups_ranges_and_quotes() -> None:
    assert parse_groups('("SM","ME"),("SM"),("SM","SR")') == [["SM", "ME"], ["SM"], ["SM", "SR"]]
    assert parse_groups("(0-2),(0,1),(0),(0-1),(0,1)") == [
        ["0", "1", "2"], ["0", "1"], ["0"], ["0", "1"], ["0", "1"]
    ]


def test_storage_choice_follows_what_each_slot_offers() -> None:
    # Wavecom (python-gsmmodem profile): SR only in slot 1.
    assert choose_storages(parse_groups('("SM","BM","SR"),("SM")')) == ("SM", "SM")
    assert choose_storages(parse_groups('("ME","MT","SM"),("ME","MT","SM"),("ME")')) == (
        "MT", "MT", "ME"
    )


def test_cnmi_fallbacks_down_to_nothing() -> None:
    full = parse_groups("(0-3),(0-3),(0,2),(0-2),(0,1)")
    assert cnmi_candidates(full, allow_route=False)[0] == (2, 1, 0, 2, 0)
    sim800 = parse_groups("(0-3),(0-3),(0,2),(0,1),(0,1)")
    assert cnmi_candidates(sim800, allow_route=False)[0] == (2, 1, 0, 1, 0)
    # Stored mode first even when routing is allowed; routed only without a stored setting.
    assert cnmi_candidates(full, allow_route=True)[0] == (2, 1, 0, 2, 0)
    no_store = parse_groups("(0-3),(0,2,3),(0,2),(0-2),(0,1)")
    assert cnmi_candidates(no_store, allow_route=False) == []
    assert cnmi_candidates(no_store, allow_route=True)[0] == (2, 2, 0, 1, 0)
    assert cnmi_candidates(parse_groups("(0),(0)"), allow_route=False) == []


def test_signal_and_registration() -> None:
    assert parse_csq("0,99").dbm == -113
    assert parse_csq("31,99").dbm == -51
    assert parse_csq("15,0").dbm == -83
    assert parse_csq("99,99").dbm is None and parse_csq("99,99").bars == 0
    assert parse_csq("31,99").bars == 5
    assert parse_creg("0,5", urc=False) is Registration.ROAMING
    assert parse_creg('3,"00C3","0010"', urc=True) is Registration.DENIED
    assert not Registration.SEARCHING.can_send and Registration.HOME.can_send


def test_cmgl_pairs() -> None:
    lines = ("+CMGL: 1,0,,3", "00AA01", "+CMGL: 4,1,,2", "zz", "+CMGL: 5,1,,1", "01")
    assert parse_cmgl(lines) == [(1, 0, b"\x00\xaa\x01"), (5, 1, b"\x01")]


@given(
    total=st.integers(2, 8),
    data=st.data(),
)
def test_reassembly_in_any_order_with_duplicates(total: int, data: st.DataObject) -> None:
    texts = [f"<{i}>" for i in range(1, total + 1)]
    order = data.draw(st.permutations(range(1, total + 1)))
    dups = data.draw(st.lists(st.sampled_from(order[:-1]), max_size=3))  # parts stored twice
    r = Reassembler(timeout=60)
    out = []
    for n, seq in enumerate([*order[:-1], *dups, order[-1]]):
        part = InboundPart("+44", texts[seq - 1], T0, 7, total, seq, 8, token=100 + n)
        done = r.add(part, now=0)
        if done is not None:
            out.append(done)
    assert len(out) == 1 and out[0].text == "".join(texts) and out[0].complete
    tokens = sorted(t for t in out[0].tokens if isinstance(t, int))
    assert tokens == list(range(100, 100 + total + len(dups)))  # every stored copy is deleted
    assert len(r) == 0


def test_partial_message_expires_incomplete() -> None:
    r = Reassembler(timeout=10)
    assert r.add(InboundPart("+44", "a", T0, 1, 3, 1, 8, token=1), now=0) is None
    assert r.add(InboundPart("+44", "c", T0, 1, 3, 3, 8, token=3), now=5) is None
    assert r.next_expiry() == 10
    assert r.expire(9) == []
    (partial,) = r.expire(10)
    assert (partial.text, partial.parts, partial.total, partial.complete) == ("ac", 2, 3, False)
    assert partial.tokens == (1, 3)


def test_same_reference_from_two_senders_is_two_messages() -> None:
    r = Reassembler(timeout=10)
    r.add(InboundPart("+441", "x", T0, 1, 2, 1, 8), now=0)
    done = r.add(InboundPart("+442", "y", T0, 1, 2, 2, 8), now=0)
    assert done is None and len(r) == 2
