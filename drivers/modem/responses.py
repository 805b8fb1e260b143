"""Pure parsers and choices over AT answers: what the modem supports, signal, registration.

Sources: 3GPP TS 27.005 §3.2.2 (+CPMS), §3.4.1 (+CNMI), §3.4.2 (+CMGL), §3.4.3 (+CMGR);
3GPP TS 27.007 §7.2 (+CREG), §8.5 (+CSQ), §7.3 (+COPS); protocols.md §5.3–§5.5.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from enum import IntEnum

_GROUP_RE = re.compile(r"\(([^()]*)\)")


def parse_groups(value: str) -> list[list[str]]:
    """``("SM","ME"),("SM")`` or ``(0-2),(0,1)`` -> lists of allowed values (ranges expanded)."""
    groups: list[list[str]] = []
    for body in _GROUP_RE.findall(value):
        items: list[str] = []
        for raw in body.split(","):
            item = raw.strip().strip('"')
            if re.fullmatch(r"\d+-\d+", item):
                lo, hi = (int(x) for x in item.split("-"))
                items += [str(i) for i in range(lo, hi + 1)]
            elif item:
                items.append(item)
        groups.append(items)
    if not groups and value.strip():  # some modems answer a bare list for a single parameter
        groups.append([v.strip().strip('"') for v in value.split(",") if v.strip()])
    return groups


# Preferred storages: "MT" (ME+SM, most room), then the SIM, then the device.
_STORAGE_PREFERENCE = ("MT", "SM", "ME")


def choose_storages(groups: list[list[str]]) -> tuple[str, ...]:
    """One storage per +CPMS slot (mem1 read/delete, mem2 write, mem3 receive), the preferred
    one each slot offers; a slot that offers none of them keeps its first value."""
    chosen: list[str] = []
    for offered in groups[:3]:
        pick = next((m for m in _STORAGE_PREFERENCE if m in offered), None)
        if pick is None and offered:
            pick = offered[0]
        if pick is None:
            break
        chosen.append(pick)
    return tuple(chosen)


# +CNMI settings in order of preference (protocols.md §5.3): mode 2 buffers URCs while a
# command runs; mt 1 stores SMS-DELIVERs and indicates +CMTI; ds 2 stores status reports
# (+CDSI), ds 1 routes them (+CDS). python-gsmmodem's default and fallback are 2,1,0,2 / 2,1,0,1,0.
CNMI_STORE = ((2, 1, 0, 2, 0), (2, 1, 0, 1, 0), (1, 1, 0, 2, 0), (1, 1, 0, 1, 0), (2, 1, 0, 0, 0),
              (1, 1, 0, 0, 0))
CNMI_ROUTE = ((2, 2, 0, 1, 0), (2, 2, 0, 2, 0), (1, 2, 0, 1, 0), (2, 2, 0, 0, 0))


def cnmi_candidates(groups: list[list[str]], allow_route: bool) -> list[tuple[int, ...]]:
    """The +CNMI settings the modem says it supports, best first (empty: fall back to polling).
    Stored settings (durable) always come first; routed ones follow only when ``allow_route``,
    so they are used only by a modem that offers no stored indication."""
    order = (CNMI_STORE + CNMI_ROUTE) if allow_route else CNMI_STORE
    out: list[tuple[int, ...]] = []
    for setting in order:
        fits = all(
            i >= len(groups) or not groups[i] or str(v) in groups[i]
            for i, v in enumerate(setting)
        )
        if fits and len(groups) >= 2:
            out.append(setting)
    return out


def parse_cmgl(lines: tuple[str, ...]) -> list[tuple[int, int, bytes]]:
    """``+CMGL: <index>,<stat>,[<alpha>],<length>`` + PDU line pairs -> (index, stat, pdu)."""
    out: list[tuple[int, int, bytes]] = []
    header: tuple[int, int] | None = None
    for line in lines:
        if line.startswith("+CMGL:"):
            fields = line[6:].split(",")
            header = (int(fields[0]), int(fields[1]))
        elif header is not None:
            # A malformed PDU line is skipped: the message stays stored for a person to see.
            with contextlib.suppress(ValueError):
                out.append((header[0], header[1], bytes.fromhex(line)))
            header = None
    return out


def parse_cmgr(lines: tuple[str, ...]) -> bytes | None:
    """``+CMGR: <stat>,[<alpha>],<length>`` + PDU line -> the PDU (SCA first)."""
    for i, line in enumerate(lines):
        if line.startswith("+CMGR:") and i + 1 < len(lines):
            try:
                return bytes.fromhex(lines[i + 1])
            except ValueError:
                return None
    return None


def parse_index(value: str) -> tuple[str, int] | None:
    """``"SM",3`` (from +CMTI / +CDSI) -> ("SM", 3)."""
    mem, _, index = value.partition(",")
    try:
        return mem.strip().strip('"'), int(index)
    except ValueError:
        return None


def parse_csca(value: str) -> str | None:
    """``"+447785016005",145`` -> "+447785016005"; empty -> None."""
    number = value.split(",")[0].strip().strip('"')
    return number or None


class Registration(IntEnum):
    """TS 27.007 §7.2 +CREG <stat>."""

    NOT_SEARCHING = 0
    HOME = 1
    SEARCHING = 2
    DENIED = 3
    UNKNOWN = 4
    ROAMING = 5

    @property
    def can_send(self) -> bool:
        # protocols.md §5.5: "SMS can be sent when stat in {1,5}"
        return self in (Registration.HOME, Registration.ROAMING)


def parse_creg(value: str, *, urc: bool) -> Registration:
    """The read answer is ``<n>,<stat>[,...]``, the URC ``<stat>[,...]``."""
    fields = [f.strip() for f in value.split(",")]
    raw = fields[0] if urc else (fields[1] if len(fields) > 1 else fields[0])
    try:
        return Registration(int(raw))
    except ValueError:
        return Registration.UNKNOWN


@dataclass(frozen=True, slots=True)
class Signal:
    rssi: int  # TS 27.007 §8.5 <rssi> 0..31, 99 unknown
    dbm: int | None
    bars: int  # 0..5


def signal_from_rssi(rssi: int) -> Signal:
    """TS 27.007 §8.5: 0 = -113 dBm or less, 1 = -111, 2..30 = -109..-53 (2 dB steps),
    31 = -51 or greater, 99 = unknown."""
    if not 0 <= rssi <= 31:
        return Signal(rssi, None, 0)
    dbm = -113 + 2 * rssi
    # Bars (our choice, the usual phone thresholds): <-105 none ... >=-65 five.
    bars = sum(dbm >= t for t in (-105, -97, -89, -81, -65))
    return Signal(rssi, dbm, bars)


def parse_csq(value: str) -> Signal:
    try:
        return signal_from_rssi(int(value.split(",")[0]))
    except ValueError:
        return signal_from_rssi(99)


def parse_cops(value: str) -> str | None:
    """``0,0,"Operator"`` -> "Operator"; ``0`` (no operator) -> None."""
    fields = value.split(",")
    return fields[2].strip().strip('"') if len(fields) >= 3 else None
