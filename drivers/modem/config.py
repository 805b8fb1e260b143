"""One modem's small, frozen configuration (DESIGN.md "each driver gets its own config object").

The daemon's TOML loader builds these from ``[[modem]]`` tables; tests build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from enum import StrEnum


class Indications(StrEnum):
    """How inbound SMS may reach us (TS 27.005 §3.4.1 +CNMI <mt>). Stored mode is always
    preferred when the modem offers it: it is the durable one (drivers/modem/client.py)."""

    STORE = "store"  # mt=1 +CMTI -> read -> hand over -> delete; no mt=1: AT+CMGL=4 polling
    # Stored when offered; a modem without mt=1 then uses mt=2 (+CMT with the PDU, +CNMA when
    # +CSMS service is 1) instead of polling: faster, but parts held in memory until complete.
    ROUTE = "route"


@dataclass(frozen=True, slots=True)
class ModemConfig:
    name: str
    port: str | None = None  # a fixed device path, or None to find the modem by ``imei``
    imei: str | None = None  # identity: found again on any port after a replug
    baudrate: int = 115200
    pin: str | None = field(default=None, repr=False)  # never in logs or tracebacks
    smsc: str | None = None  # SCA written into every PDU; None: the modem's +CSCA is used
    groups: tuple[str, ...] = ()
    # Limits (parts, not messages): carriers block SIMs that send too fast or in bursts.
    rate_per_minute: float = 10.0
    parts_per_day: int | None = None
    day_reset: time = time(0, 0)  # UTC time of day when the daily count starts again
    random_gap: tuple[float, float] = (0.0, 0.0)  # extra seconds between sends, uniform
    status_reports: bool = True  # TP-SRR on every part
    use_cmms: bool = True  # AT+CMMS=2 keeps the radio link up between parts (TS 27.005 §3.5.6)
    indications: Indications = Indications.STORE
    # Timeouts (seconds). AT+CMGS may take up to 120 s (Quectel: "determined by network").
    command_timeout: float = 10.0
    prompt_timeout: float = 5.0
    send_timeout: float = 120.0
    sim_busy_timeout: float = 30.0  # how long start-up waits out +CME 14 / 515
    health_interval: float = 30.0
    poll_interval: float = 10.0  # AT+CMGL=4 polling when the modem has no usable +CNMI
    handover_retry: float = 30.0  # storage read again this long after a refused hand-over
    rediscover_interval: float = 5.0
    reassembly_timeout: float = 3600.0  # partial inbound concatenations are handed over after
    wavecom_cpin_grace: float = 0.3  # how long to wait for the OK Wavecom never sends

    def __post_init__(self) -> None:
        if self.port is None and self.imei is None:
            raise ValueError(f"modem {self.name!r}: set port or imei")
        if self.rate_per_minute <= 0:
            raise ValueError(f"modem {self.name!r}: rate_per_minute must be > 0")
        if self.parts_per_day is not None and self.parts_per_day < 1:
            raise ValueError(f"modem {self.name!r}: parts_per_day must be >= 1")
        lo, hi = self.random_gap
        if not 0 <= lo <= hi:
            raise ValueError(f"modem {self.name!r}: random_gap must be 0 <= low <= high")
