"""Codec throughput: text -> parts ready for submit_sm, ours vs smpplib.gsm.make_parts.

Run by hand: ``.venv/bin/python bench/codec.py [N] [REPEATS]`` (default 5,000 messages, best of 7).

The corpus is generated from a fixed seed: short promos with URLs, OTPs, GSM extension characters
(€ { } [ ] ~ ^ |), accented text inside GSM-7 (é ü Ñ ...) and outside it (ç á ő ...), long
300-900 character messages, emoji and CJK. Both sides turn every text into the list of
short_message octet strings (UDH included) in the same process; the best of REPEATS passes is
reported as messages/s, with the ratio.

Every part each side produced is then checked with rules from the specs, not with either codec:
over capacity (TS 23.040: 140 octets of user data once the UDH, padded to septets, is counted),
an escape sequence or a surrogate pair cut between parts, or the parts not decoding back to the
original text. Finally TPDU encodes/s: ``drivers.modem.pdu.encode_submit`` on our parts.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smpplib import gsm as smpplib_gsm

from gateway.codec import encode
from gateway.codec.gsm7 import decode_septets, header_septets
from gateway.codec.udh import parse_udh

SEED = 20261127

WORDS = (
    "sale", "offer", "today", "only", "your", "order", "has", "shipped", "track", "it", "here",
    "thanks", "for", "shopping", "with", "us", "new", "arrivals", "weekend", "discount", "free",
    "delivery", "on", "orders", "over", "reply", "STOP", "to", "opt", "out", "store", "opens",
    "at", "tomorrow", "appointment", "reminder", "please", "confirm", "booking", "table", "for",
    "two", "points", "balance",
)
ACCENT_IN = "éèùìòÇØøÅåÆæßÉÄÖÑÜäöñüà"  # in the default alphabet
ACCENT_OUT = "çáíóúâêôãõőűłśźżčšžřğışİ"  # not in it
EXTENSION = "€{}[]~^|\\"
EMOJI = ["😀", "🎉", "❤️", "👍🏽", "🇮🇹", "👨\u200d👩\u200d👧", "🔥", "✅", "🛍️"]
CJK = "您的订单已发货请查收感谢惠顾优惠活动今天截止验证码是分钟内有效注文ありがとうございます세일"


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _promo(rng: random.Random) -> str:
    url = f"https://shop.example/{rng.choice(['s', 'p', 'deal'])}/{rng.randrange(10**6):06d}"
    return f"{_words(rng, rng.randrange(6, 20)).capitalize()}! {rng.randrange(5, 70)}% off {url}"


def _otp(rng: random.Random) -> str:
    return f"Your verification code is {rng.randrange(10**6):06d}. It expires in 10 minutes."


def _extension(rng: random.Random) -> str:
    body = _words(rng, rng.randrange(5, 25))
    return f"{body} [{rng.choice(EXTENSION)}] only {rng.randrange(5, 99)}€ {{code}} ~ {body[:20]}"


def _sprinkle(rng: random.Random, text: str, chars: str, rate: float) -> str:
    return "".join(rng.choice(chars) if ch.isalpha() and rng.random() < rate else ch for ch in text)


def _accent_in(rng: random.Random) -> str:
    return _sprinkle(rng, _words(rng, rng.randrange(8, 40)), ACCENT_IN, 0.08)


def _accent_out(rng: random.Random) -> str:
    return _sprinkle(rng, _words(rng, rng.randrange(8, 40)), ACCENT_OUT, 0.05)


def _long(rng: random.Random) -> str:
    size = rng.randrange(300, 901)
    kind = rng.random()
    out = []
    while sum(map(len, out)) < size:
        piece = _words(rng, 8)
        if kind < 0.25:
            piece += rng.choice(EXTENSION)  # escape characters land on part boundaries
        elif kind < 0.35:
            piece = _sprinkle(rng, piece, ACCENT_OUT, 0.05)
        elif kind < 0.45:
            piece += rng.choice(EMOJI)
        out.append(piece + ". ")
    return "".join(out)[:size]


def _emoji(rng: random.Random) -> str:
    return " ".join(
        _words(rng, 2) + rng.choice(EMOJI) for _ in range(rng.randrange(2, 30))
    )


def _cjk(rng: random.Random) -> str:
    return "".join(rng.choice(CJK) for _ in range(rng.randrange(10, 200)))


KINDS: tuple[tuple[Callable[[random.Random], str], float], ...] = (
    (_promo, 0.28),
    (_otp, 0.20),
    (_extension, 0.10),
    (_accent_in, 0.10),
    (_accent_out, 0.08),
    (_long, 0.14),
    (_emoji, 0.05),
    (_cjk, 0.05),
)


def corpus(n: int) -> list[str]:
    rng = random.Random(SEED)
    makers = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    return [rng.choices(makers, weights)[0](rng) for _ in range(n)]


# --- the two sides: text -> (data_coding, [short_message, ...]) ---


def ours(text: str) -> tuple[int, list[bytes]]:
    m = encode(text)
    return m.data_coding, [p.short_message for p in m.parts]


def peer(text: str) -> tuple[int, list[bytes]]:
    parts, data_coding, _esm_class = smpplib_gsm.make_parts(text)
    return data_coding, parts


def best_rates(
    sides: list[Callable[[str], object]], texts: list[str], repeats: int
) -> list[float]:
    """Messages/s of each side: best of ``repeats`` passes, the sides interleaved pass by pass so
    that a busy machine slows both alike. CPU time of this process, not wall time, so other
    processes on the (shared, 2-core) machine disturb the figures less."""
    best = [float("inf")] * len(sides)
    for _ in range(repeats):
        for i, fn in enumerate(sides):
            start = time.process_time()
            for t in texts:
                fn(t)
            best[i] = min(best[i], time.process_time() - start)
    return [len(texts) / b for b in best]


# --- checking parts by the rules ---


@dataclass
class Faults:
    over_capacity: int = 0
    split: int = 0
    not_decoding: int = 0  # parts of messages whose parts do not decode back to the text
    parts: int = 0

    @property
    def wrong(self) -> int:
        return self.over_capacity + self.split + self.not_decoding


def check(text: str, data_coding: int, parts: list[bytes], faults: Faults) -> None:
    faults.parts += len(parts)
    multipart = len(parts) > 1
    flagged = 0
    decoded = []
    for raw in parts:
        if multipart:
            _header, used = parse_udh(raw)
        else:
            used = 0
        payload = raw[used:]
        if data_coding == 0x00:
            header_cost = header_septets(used) if used else 0
            over = header_cost + len(payload) > 160
            split = multipart and payload.endswith(b"\x1b")
            decoded.append(decode_septets(payload))
        else:
            over = used + len(payload) > 140
            first = int.from_bytes(payload[:2], "big") if payload else 0
            last = int.from_bytes(payload[-2:], "big") if payload else 0
            split = 0xD800 <= last <= 0xDBFF or 0xDC00 <= first <= 0xDFFF
            decoded.append(payload.decode("utf-16-be", errors="replace"))
        faults.over_capacity += over
        faults.split += split
        flagged += over or split
    if "".join(decoded) != text and not flagged:
        faults.not_decoding += len(parts)


def faults_of(fn: Callable[[str], tuple[int, list[bytes]]], texts: list[str]) -> Faults:
    faults = Faults()
    for t in texts:
        data_coding, parts = fn(t)
        check(t, data_coding, parts, faults)
    return faults


def tpdu_rate(texts: list[str], repeats: int) -> tuple[float, int] | None:
    try:
        from drivers.modem.pdu import encode_submit
    except ImportError:
        return None
    messages = [encode(t) for t in texts]
    count = sum(len(m.parts) for m in messages)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for m in messages:
            encode_submit(m, "+447700900123")
        best = min(best, time.process_time() - start)
    return count / best, count


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    texts = corpus(n)
    chars = sum(map(len, texts))
    print(f"corpus: {n} messages, {chars} characters, seed {SEED}; best of {repeats}")
    ours_rate, peer_rate = best_rates([ours, peer], texts, repeats)
    print(f"ours   gateway.codec.encode      {ours_rate:>10,.0f} messages/s")
    print(f"peer   smpplib.gsm.make_parts    {peer_rate:>10,.0f} messages/s")
    print(f"ratio  ours / peer               {ours_rate / peer_rate:>10.2f}x")
    for name, fn in (("ours", ours), ("peer", peer)):
        f = faults_of(fn, texts)
        print(
            f"{name:<6} parts {f.parts:>6}  wrong {f.wrong:>5}  (over capacity {f.over_capacity},"
            f" split escape/surrogate {f.split}, not decoding back {f.not_decoding})"
        )
    tpdu = tpdu_rate(texts, repeats)
    if tpdu is None:
        print("tpdu   drivers.modem.pdu not available")
    else:
        rate, count = tpdu
        print(f"tpdu   drivers.modem.pdu.encode_submit {rate:>10,.0f} TPDUs/s ({count} per pass,"
              " from already encoded messages)")


if __name__ == "__main__":
    main()
