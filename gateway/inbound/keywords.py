"""Inbound keyword decisions: opt-out, re-opt-in, HELP, and phrases flagged for an operator.

Pure: text in, a frozen :class:`Decision` out; the caller owns the consent ledger, the outbox
and the clock, and passes in what this module needs to know (:class:`ConsentView`).

Sources (see ``shared/reference/segmentation-compliance.md`` §6.1):

* CTIA universal keywords: opt-out STOP, END, CANCEL, UNSUBSCRIBE, QUIT; help HELP, INFO [C8][C9].
* FCC 47 CFR 64.1200(a)(10)-(12) (order FCC 24-18, in force 11 Apr 2025): replying *stop, quit,
  end, revoke, opt out, cancel, unsubscribe* always revokes consent; other wording a reasonable
  person reads as revocation must be honoured too; one confirmation text within 5 minutes [C1][C2].
* Carrier/provider sets: STOPALL, REVOKE, OPTOUT; START, YES, UNSTOP re-opt-in [C4][C5];
  ARRET, OPT-OUT, REMOVE [C7].

Matching rules (what "ignoring case, spaces and punctuation" means here):

1. :func:`normalise` folds the text: NFKD, combining marks and format characters (zero-width
   spaces, ...) dropped, casefold, NFKC. So "ＳＴＯＰ", "Stop", "ARRÊT" and "ST\u200bOP" read as
   "stop" / "arret".
2. :func:`words` splits the folded text on every run of characters that are not letters or
   digits: spaces, punctuation, symbols and emoji separate words and never count (apostrophes
   are dropped first, so "don't" is the word "dont").
3. A message whose words are exactly one keyword's words is that keyword ("opt-out", "OPT OUT",
   "opt_out" are all the words ``opt out``). Nothing else is auto-applied.
4. Flagged (possible revocation, for an operator; never auto-applied):

   * a phrase from :data:`REVOCATION_PHRASES` appears as consecutive words ("stop texting me",
     "no more", "no mas", "alto");
   * a one-word message within Damerau-Levenshtein distance 1 of an opt-out keyword, both of at
     least 4 letters ("stpo", "stopp", "unsubscibe"); shorter words are left out because their
     neighbours are everyday words (END: "and", "send"; STOP: "top");
   * a longer message containing an opt-out keyword: a strong one (STOP, STOPALL, UNSUBSCRIBE,
     REVOKE, OPTOUT/OPT OUT, ARRET) anywhere, a weak one (END, CANCEL, QUIT, REMOVE, which are
     also ordinary words) only in a message of at most 3 words ("stop please", "cancel it").
"""

from __future__ import annotations

import enum
import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Final

from gateway.codec import CodecError, ReferenceCounter, encode
from gateway.config import KeywordsConfig
from gateway.errors import SmsgateError

CONFIRMATION_WINDOW_S: Final = 300.0
"""FCC 47 CFR 64.1200(a)(12): one confirmation text is allowed within 5 minutes [C1][C2]."""


class Action(enum.Enum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    FLAGGED = "flagged"
    OTHER = "other"


class ConsentState(enum.Enum):
    """The number's current consent, as the ledger says (latest row wins, §6.4)."""

    UNKNOWN = "unknown"
    SUBSCRIBED = "subscribed"
    OPTED_OUT = "opted_out"


Words = tuple[str, ...]

# Canonical keyword -> the word sequences that spell it (after normalise + words()).
OPT_OUT_KEYWORDS: Final[dict[str, tuple[Words, ...]]] = {
    "STOP": (("stop",),),
    "STOPALL": (("stopall",), ("stop", "all")),
    "UNSUBSCRIBE": (("unsubscribe",),),
    "CANCEL": (("cancel",),),
    "END": (("end",),),
    "QUIT": (("quit",),),
    "REVOKE": (("revoke",),),
    "OPTOUT": (("optout",), ("opt", "out")),
    "REMOVE": (("remove",),),
    "ARRET": (("arret",),),
}
"""CTIA + FCC 2025 + provider sets (§6.1). OPT-OUT and OPT OUT are the words ``opt out``."""

OPT_IN_KEYWORDS: Final[dict[str, tuple[Words, ...]]] = {
    "START": (("start",),),
    "UNSTOP": (("unstop",),),
    "YES": (("yes",),),
}
"""Re-opt-in [C4][C6]; only meaningful after a prior opt-out."""

HELP_KEYWORDS: Final[dict[str, tuple[Words, ...]]] = {
    "HELP": (("help",),),
    "INFO": (("info",),),
}
"""CTIA: answer HELP whether or not the sender is subscribed [C8][C9]."""

# FCC always-count words that are also everyday words: only flagged in very short messages.
_WEAK_OPT_OUT: Final = frozenset({"end", "cancel", "quit", "remove"})
_SHORT_MESSAGE_WORDS: Final = 3
_FUZZY_MIN_LENGTH: Final = 4

REVOCATION_PHRASES: Final[tuple[str, ...]] = (
    # English wording a reasonable person reads as revocation (FCC 24-18, C2 analysis).
    "stop texting", "stop text", "stop messaging", "stop sending", "stop contacting",
    "stop these", "stop it", "stop me", "no more", "unsubscribe me", "remove me", "take me off",
    "leave me alone", "dont text", "do not text", "dont message", "do not message",
    "dont contact", "do not contact", "not interested", "opt me out",
    # Spanish and French (§6.1: "no mas", "alto"; other languages per C2).
    "no mas", "alto", "baja", "darme de baja", "cancelar", "parar", "desuscribir",
    "desinscrire", "desabonner",
)
"""Phrases that flag a message, matched as consecutive words after :func:`normalise`."""

_PHRASES: Final[tuple[Words, ...]] = tuple(tuple(p.split()) for p in REVOCATION_PHRASES)
_WORD = re.compile(r"[^\W_]+")
_DROPPED_CATEGORIES: Final = frozenset({"Mn", "Mc", "Me", "Cf"})
# An apostrophe joins a word ("don't" is one word, "dont"), it does not split it.
_APOSTROPHES: Final = str.maketrans("", "", "'\u2019\u02bc")


def normalise(text: str) -> str:
    """Fold compatibility forms, accents, case and invisible characters (see the module doc)."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if unicodedata.category(c) not in _DROPPED_CATEGORIES)
    return unicodedata.normalize("NFKC", kept.casefold())


def words(text: str) -> Words:
    """The words of ``text`` after :func:`normalise`; everything else is a separator."""
    return tuple(_WORD.findall(normalise(text).translate(_APOSTROPHES)))


def _index(table: dict[str, tuple[Words, ...]]) -> dict[Words, str]:
    return {spelling: keyword for keyword, spellings in table.items() for spelling in spellings}


_OPT_OUT: Final = _index(OPT_OUT_KEYWORDS)
_OPT_IN: Final = _index(OPT_IN_KEYWORDS)
_HELP: Final = _index(HELP_KEYWORDS)
_OPT_OUT_SINGLE: Final = {w[0]: k for w, k in _OPT_OUT.items() if len(w) == 1}


def edit_distance_at_most_one(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance <= 1: one insertion, deletion, substitution or swap."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diffs = [i for i in range(la) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        i, j = diffs[0], diffs[-1]
        return len(diffs) == 2 and j == i + 1 and a[i] == b[j] and a[j] == b[i]
    short, long_ = (a, b) if la < lb else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1:]


def _contains(haystack: Words, needle: Words) -> bool:
    n = len(needle)
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def flag_reason(ws: Words) -> str | None:
    """Why these words might be a revocation an operator should look at, or None."""
    for phrase in _PHRASES:
        if _contains(ws, phrase):
            return f"revocation phrase {' '.join(phrase)!r}"
    if len(ws) == 1:
        for word, keyword in _OPT_OUT_SINGLE.items():
            if min(len(word), len(ws[0])) >= _FUZZY_MIN_LENGTH and edit_distance_at_most_one(
                ws[0], word
            ):
                return f"{ws[0]!r} is one edit from {keyword}"
        return None
    for spelling, keyword in _OPT_OUT.items():
        weak = spelling[0] in _WEAK_OPT_OUT
        if weak and len(ws) > _SHORT_MESSAGE_WORDS:
            continue
        if _contains(ws, spelling):
            return f"{keyword} inside a longer message"
    return None


@dataclass(frozen=True, slots=True)
class ConsentView:
    """What the ledger knows about the sending number, as of the inbound message.

    ``opted_out_at`` is when the current opt-out began (None unless OPTED_OUT);
    ``last_confirmation_at`` is when we last sent this number an opt-out confirmation.
    Times are seconds on one clock (the caller's; epoch seconds in the daemon).
    """

    state: ConsentState = ConsentState.UNKNOWN
    opted_out_at: float | None = None
    last_confirmation_at: float | None = None


def should_confirm(consent: ConsentView, *, received_at: float, now: float) -> bool:
    """At most one confirmation per opt-out, and only within the FCC's 5 minutes.

    A STOP repeated while the number is already opted out and was confirmed since that
    opt-out began gets no second text; a confirmation that would go out more than
    :data:`CONFIRMATION_WINDOW_S` after the STOP was received is not sent at all.
    """
    if now - received_at > CONFIRMATION_WINDOW_S:
        return False
    if consent.state is not ConsentState.OPTED_OUT or consent.last_confirmation_at is None:
        return True
    began = consent.opted_out_at
    return began is not None and consent.last_confirmation_at < began


class KeywordTemplateError(SmsgateError, ValueError):
    """A reply template names a placeholder we do not fill, or is malformed."""

    def __init__(self, template: str, problem: str) -> None:
        self.template = template
        self.problem = problem
        super().__init__(f"{problem}: {template!r}")


RATES_NOTICE: Final = "Msg & data rates may apply"
_PLACEHOLDERS: Final = frozenset({"brand", "contact", "frequency"})


def _render(template: str, values: dict[str, str]) -> str:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise KeywordTemplateError(template, str(exc)) from exc
    unknown = fields - _PLACEHOLDERS
    if unknown:
        raise KeywordTemplateError(template, f"unknown placeholder {sorted(unknown)[0]!r}")
    return template.format(**values)


def help_text_problems(text: str) -> tuple[str, ...]:
    """What is wrong with a rendered HELP reply, empty when nothing is.

    CTIA's required content [C10] (the rates notice, how to stop), and its length: a reply
    longer than one SMS part costs more and may arrive in pieces on old handsets.
    """
    problems = []
    if RATES_NOTICE.casefold() not in text.casefold():
        problems.append(f"does not say {RATES_NOTICE!r}")
    if "stop" not in words(text):
        problems.append("does not say how to stop (reply STOP)")
    try:
        # A throwaway counter: measuring must not consume the real concatenation references.
        segments = encode(text, references=ReferenceCounter()).segments
    except CodecError:
        problems.append("is too long to send")
    else:
        if segments > 1:
            problems.append(f"takes {segments} SMS parts (one is cheaper and arrives whole)")
    return tuple(problems)


@dataclass(frozen=True, slots=True)
class Replies:
    """The texts sent back, rendered once from configuration."""

    help: str
    stop_confirmation: str
    start_confirmation: str

    @classmethod
    def from_config(cls, config: KeywordsConfig) -> Replies:
        """Fill ``{brand}``, ``{contact}`` and ``{frequency}`` in the configured templates."""
        values = {
            "brand": config.brand,
            "contact": config.help_contact,
            "frequency": config.frequency,
        }
        return cls(
            help=_render(config.help_text, values),
            stop_confirmation=_render(config.stop_confirmation, values),
            start_confirmation=_render(config.start_confirmation, values),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one inbound text.

    ``keyword`` is the canonical keyword matched (``"OPTOUT"`` for "opt-out"), also for a
    START that changes nothing; ``reply`` is the text to send back, if any; ``flagged`` says
    why an operator should read the message (only with ``Action.FLAGGED``).
    """

    action: Action
    keyword: str | None = None
    reply: str | None = None
    flagged: str | None = None


def decide(
    text: str,
    consent: ConsentView,
    replies: Replies,
    *,
    received_at: float,
    now: float,
) -> Decision:
    """Classify ``text`` from a number whose consent is ``consent`` (see the module doc)."""
    ws = words(text)
    keyword = _OPT_OUT.get(ws)
    if keyword is not None:
        confirm = should_confirm(consent, received_at=received_at, now=now)
        return Decision(Action.OPT_OUT, keyword, replies.stop_confirmation if confirm else None)
    keyword = _HELP.get(ws)
    if keyword is not None:
        return Decision(Action.HELP, keyword, replies.help)
    keyword = _OPT_IN.get(ws)
    if keyword is not None:
        if consent.state is ConsentState.OPTED_OUT:
            return Decision(Action.OPT_IN, keyword, replies.start_confirmation)
        # "YES" from a subscriber is an ordinary reply, not a consent change.
        return Decision(Action.OTHER, keyword)
    reason = flag_reason(ws)
    if reason is not None:
        return Decision(Action.FLAGGED, flagged=reason)
    return Decision(Action.OTHER)
