"""Inbound keywords: opt-out, re-opt-in, HELP, flagged phrases, one confirmation per opt-out."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import KeywordsConfig
from gateway.inbound.keywords import (
    CONFIRMATION_WINDOW_S,
    OPT_OUT_KEYWORDS,
    RATES_NOTICE,
    Action,
    ConsentState,
    ConsentView,
    Decision,
    KeywordTemplateError,
    Replies,
    decide,
    edit_distance_at_most_one,
    help_text_problems,
    normalise,
    words,
)

REPLIES = Replies.from_config(
    KeywordsConfig(
        brand="Acme Shoes",
        help_text=(
            "{brand} alerts: help at {contact}. {frequency}. Msg & data rates may apply. "
            "Reply STOP to cancel."
        ),
        stop_confirmation="{brand}: unsubscribed, no more messages.",
        help_contact="help@acme.example",
        frequency="Up to 4 msgs/month",
    ),
)
SUBSCRIBED = ConsentView(ConsentState.SUBSCRIBED)
UNKNOWN = ConsentView()
OPTED_OUT = ConsentView(ConsentState.OPTED_OUT, opted_out_at=100.0, last_confirmation_at=100.5)
OPTED_OUT_UNCONFIRMED = ConsentView(ConsentState.OPTED_OUT, opted_out_at=100.0)


def run(text: str, consent: ConsentView = SUBSCRIBED, *, received_at: float = 1000.0,
        now: float = 1000.0) -> Decision:
    return decide(text, consent, REPLIES, received_at=received_at, now=now)


OPT_OUT_CASES = [
    ("STOP", "STOP"), ("stop", "STOP"), ("Stop", "STOP"), ("  stop  ", "STOP"),
    ("STOP.", "STOP"), ("stop!!!", "STOP"), ('"Stop"', "STOP"), ("(stop)", "STOP"),
    ("stop 🛑", "STOP"), ("\tSTOP\r\n", "STOP"), ("ＳＴＯＰ", "STOP"), ("ST\u200bOP", "STOP"),
    ("STOPALL", "STOPALL"), ("stop all", "STOPALL"), ("Stop-All", "STOPALL"),
    ("UNSUBSCRIBE", "UNSUBSCRIBE"), ("unsubscribe.", "UNSUBSCRIBE"),
    ("CANCEL", "CANCEL"), ("cancel", "CANCEL"),
    ("END", "END"), ("end.", "END"),
    ("QUIT", "QUIT"), ("Quit!", "QUIT"),
    ("REVOKE", "REVOKE"), ("revoke", "REVOKE"),
    ("OPTOUT", "OPTOUT"), ("OPT-OUT", "OPTOUT"), ("OPT OUT", "OPTOUT"), ("opt  out", "OPTOUT"),
    ("opt_out", "OPTOUT"), ("Opt-Out!", "OPTOUT"),
    ("REMOVE", "REMOVE"), ("remove", "REMOVE"),
    ("ARRET", "ARRET"), ("ARRÊT", "ARRET"), ("arrêt", "ARRET"), ("Arret.", "ARRET"),
]


@pytest.mark.parametrize(("text", "keyword"), OPT_OUT_CASES)
def test_opt_out_keywords(text: str, keyword: str) -> None:
    decision = run(text)
    assert decision.action is Action.OPT_OUT
    assert decision.keyword == keyword
    assert decision.reply == "Acme Shoes: unsubscribed, no more messages."
    assert decision.flagged is None


def test_every_opt_out_keyword_is_in_the_table_cases() -> None:
    assert {k for _, k in OPT_OUT_CASES} == set(OPT_OUT_KEYWORDS)


@pytest.mark.parametrize("text", ["stop", "quit", "end", "revoke", "opt out", "cancel",
                                  "unsubscribe"])
def test_fcc_2025_words_always_opt_out_whatever_the_consent(text: str) -> None:
    # FCC 24-18: these words revoke consent per se, even from a number we think is opted out
    # or have never seen.
    for consent in (SUBSCRIBED, UNKNOWN, OPTED_OUT, OPTED_OUT_UNCONFIRMED):
        assert run(text, consent).action is Action.OPT_OUT


FLAGGED_CASES = [
    "stop texting me", "Please stop texting me!", "STOP SENDING ME THESE", "no more",
    "No more please", "unsubscribe me", "remove me from your list", "take me off this list",
    "leave me alone", "don't text me", "Do not text me again", "no mas", "No más",
    "NO MÁS!", "alto", "Alto.", "me das de baja", "stpo", "stopp", "sotp", "stops",
    "unsubscibe", "unsubcribe", "cancle", "revok", "optuot", "stop please", "please stop",
    "STOP STOP", "I said stop", "cancel it", "quit now", "unsubscribe from all of this right now",
    "arret svp", "not interested",
]


@pytest.mark.parametrize("text", FLAGGED_CASES)
def test_phrases_and_misspellings_are_flagged_not_applied(text: str) -> None:
    decision = run(text)
    assert decision.action is Action.FLAGGED, decision
    assert decision.flagged
    assert decision.reply is None


@pytest.mark.parametrize(
    ("text", "reason_part"),
    [("stpo", "one edit from STOP"), ("stop texting me", "'stop texting'"),
     ("please stop", "STOP inside"), ("no mas", "'no mas'")],
)
def test_flag_reasons_say_why(text: str, reason_part: str) -> None:
    reason = run(text).flagged
    assert reason is not None and reason_part in reason


OTHER_CASES = [
    "Thanks!", "What time do you open?", "see you at the end of the day tomorrow",
    "I want to cancel my order number 55 please", "and", "send", "top", "sto", "shopping",
    "", "   ", "!!!", "🙂", "stopwatch", "optimal", "helpful", "information", "starting",
]


@pytest.mark.parametrize("text", OTHER_CASES)
def test_ordinary_replies_are_other(text: str) -> None:
    decision = run(text)
    assert decision == Decision(Action.OTHER)


@pytest.mark.parametrize("text", ["HELP", "help", "Help?", " INFO ", "info.", "ＨＥＬＰ"])
@pytest.mark.parametrize("consent", [SUBSCRIBED, UNKNOWN, OPTED_OUT])
def test_help_and_info_always_get_the_reply(text: str, consent: ConsentView) -> None:
    decision = run(text, consent)
    assert decision.action is Action.HELP
    assert decision.keyword in ("HELP", "INFO")
    assert decision.reply == REPLIES.help


def test_help_reply_contents() -> None:
    reply = REPLIES.help
    assert "Acme Shoes" in reply
    assert "help@acme.example" in reply
    assert "Up to 4 msgs/month" in reply
    assert RATES_NOTICE in reply
    assert "Reply STOP" in reply
    assert help_text_problems(reply) == ()


def test_default_help_text_is_complete() -> None:
    replies = Replies.from_config(KeywordsConfig())
    assert replies.help.startswith("smsgate:")
    assert help_text_problems(replies.help) == ()
    assert help_text_problems(replies.start_confirmation) == ()


def test_help_text_problems_name_what_is_missing() -> None:
    problems = help_text_problems("Acme: call 555-0100.")
    assert len(problems) == 2
    assert any("Msg & data rates may apply" in p for p in problems)
    assert any("STOP" in p for p in problems)


def test_help_text_longer_than_one_sms_is_a_problem() -> None:
    text = REPLIES.help + " " + "Visit our shop for the latest offers. " * 2
    assert len(text) > 160
    problems = help_text_problems(text)
    assert problems == ("takes 2 SMS parts (one is cheaper and arrives whole)",)
    assert help_text_problems("Ünïcødé ✓ " + REPLIES.help)[0].startswith("takes 2 SMS parts")


@pytest.mark.parametrize("template", ["{brand} {nonsense}", "{brand", "{0}"])
def test_bad_templates_raise_our_error(template: str) -> None:
    with pytest.raises(KeywordTemplateError):
        Replies.from_config(KeywordsConfig(help_text=template))


@pytest.mark.parametrize("text", ["START", "start", "Unstop", "UNSTOP!", "yes", "YES."])
def test_re_opt_in_after_an_opt_out(text: str) -> None:
    decision = run(text, OPTED_OUT)
    assert decision.action is Action.OPT_IN
    assert decision.keyword == normalise(text).strip("!.").upper()
    assert decision.reply == REPLIES.start_confirmation


@pytest.mark.parametrize("text", ["START", "unstop", "Yes"])
@pytest.mark.parametrize("consent", [SUBSCRIBED, UNKNOWN])
def test_start_without_prior_opt_out_is_ignored(text: str, consent: ConsentView) -> None:
    decision = run(text, consent)
    assert decision.action is Action.OTHER
    assert decision.reply is None
    assert decision.keyword == text.upper()


# --- one confirmation per opt-out -----------------------------------------------------------

def test_repeated_stop_is_not_confirmed_twice() -> None:
    assert run("STOP", SUBSCRIBED).reply is not None
    again = run("STOP", OPTED_OUT)
    assert again.action is Action.OPT_OUT
    assert again.reply is None


def test_stop_from_an_opted_out_number_never_confirmed_gets_one() -> None:
    # e.g. an opt-out imported from a previous system: the number asks again, confirm once.
    assert run("STOP", OPTED_OUT_UNCONFIRMED).reply is not None


def test_confirmation_from_an_earlier_opt_out_does_not_block_a_new_one() -> None:
    # Opted out at 100 (confirmed 100.5), back in with START, out again at 500.
    consent = ConsentView(ConsentState.OPTED_OUT, opted_out_at=500.0, last_confirmation_at=100.5)
    assert run("STOP", consent).reply is not None


def test_no_confirmation_after_the_fcc_five_minutes() -> None:
    assert run("STOP", received_at=0.0, now=CONFIRMATION_WINDOW_S).reply is not None
    late = run("STOP", received_at=0.0, now=CONFIRMATION_WINDOW_S + 1)
    assert late.action is Action.OPT_OUT
    assert late.reply is None


# --- helpers --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [("ＡＲＲÊＴ", "arret"), ("Straße", "strasse"), ("e\u0301", "e"), ("ﬁ", "fi"),
     ("ST\u200dOP", "stop")],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_words_split_on_everything_but_letters_and_digits() -> None:
    assert words("  Opt-Out!! now_2 …") == ("opt", "out", "now", "2")


def _reference_distance(a: str, b: str) -> int:
    """Optimal string alignment distance, the textbook dynamic programme."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


@given(st.text("stopa", max_size=7), st.text("stopa", max_size=7))
def test_edit_distance_matches_the_reference(a: str, b: str) -> None:
    assert edit_distance_at_most_one(a, b) == (_reference_distance(a, b) <= 1)


# --- properties -----------------------------------------------------------------------------

def _is_noise(c: str) -> bool:
    # Noise is anything that folds to no letter or digit (spaces, punctuation, symbols, emoji).
    return not any(ch.isalnum() for ch in normalise(c)) and unicodedata.category(c) != "Cs"


NOISE = st.text(st.characters(codec="utf-8").filter(_is_noise), max_size=6)
ALL_KEYWORDS = [
    "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "OPT-OUT",
    "OPT OUT", "REMOVE", "ARRET", "ARRÊT", "START", "UNSTOP", "YES", "HELP", "INFO",
]


@st.composite
def disguised(draw: st.DrawFn, keyword: str) -> str:
    """``keyword`` with random case, full-width letters and noise around it."""
    out = []
    for c in keyword:
        if c.isalpha():
            c = c.lower() if draw(st.booleans()) else c
            if draw(st.booleans()) and c.isascii():
                c = chr(ord(c) + 0xFEE0)  # the full-width form (U+FF21..)
        out.append(c)
    return draw(NOISE) + "".join(out) + draw(NOISE)


@settings(max_examples=300)
@given(st.data(), st.sampled_from(ALL_KEYWORDS),
       st.sampled_from([SUBSCRIBED, UNKNOWN, OPTED_OUT, OPTED_OUT_UNCONFIRMED]))
def test_noise_around_a_keyword_never_changes_the_decision(
    data: st.DataObject, keyword: str, consent: ConsentView
) -> None:
    text = data.draw(disguised(keyword))
    assert run(text, consent) == run(keyword, consent)


_KEYWORD_TEXTS = {" ".join(words(k)) for k in ALL_KEYWORDS} | {"stop all"}


@settings(max_examples=300)
@given(st.lists(st.from_regex(r"[a-z]{1,9}", fullmatch=True), min_size=1, max_size=6),
       st.sampled_from([SUBSCRIBED, UNKNOWN, OPTED_OUT]))
def test_random_non_keyword_words_never_opt_out(
    ws: list[str], consent: ConsentView
) -> None:
    text = " ".join(ws)
    if text in _KEYWORD_TEXTS:
        return
    decision = run(text, consent)
    assert decision.action is not Action.OPT_OUT
    assert decision.action is not Action.OPT_IN


@given(st.text(max_size=40), st.sampled_from([SUBSCRIBED, UNKNOWN, OPTED_OUT]))
def test_any_text_gives_a_consistent_decision(text: str, consent: ConsentView) -> None:
    decision = run(text, consent)
    assert (decision.action is Action.FLAGGED) == (decision.flagged is not None)
    if decision.action is Action.OPT_IN:
        assert consent.state is ConsentState.OPTED_OUT
    if decision.action is Action.HELP:
        assert decision.reply == REPLIES.help
