"""The bind's own small configuration object (one per ``[[smpp]]`` table).

The daemon's TOML loader builds these; the driver never reads files or the environment.
Defaults follow common carrier practice (protocols.md §4.7: window 10 as in Kannel and
Genesys, enquire_link every 30 s, responses within 30 s).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from enum import StrEnum

from drivers.smpp.pdu import BindType
from drivers.smpp.receipts import IdConvention


class BindMode(StrEnum):
    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"
    TRANSCEIVER = "transceiver"
    PAIR = "pair"  # a transmitter and a receiver connection, one logical bind

    def bind_types(self) -> tuple[BindType, ...]:
        if self is BindMode.PAIR:
            return (BindType.TRANSMITTER, BindType.RECEIVER)
        return (BindType(self.value),)


@dataclass(frozen=True, slots=True)
class SmppConfig:
    name: str
    host: str
    port: int
    system_id: str
    password: str = field(default="", repr=False)
    system_type: str = ""
    bind: BindMode = BindMode.TRANSCEIVER
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    window: int = 10  # outstanding submit_sm
    throughput: float | None = None  # parts per second; None = as fast as the carrier allows
    id_convention: IdConvention = field(default_factory=IdConvention)
    enquire_link_interval: float = 30.0  # idle time before we probe the link
    link_timeout: float = 10.0  # an unanswered enquire_link (or bind) after this: link dead
    response_timeout: float = 30.0  # submit_sm without response after this: outcome unknown
    # submit() waits this long for a bound link, then returns Unavailable; None: no limit
    wait_bound_timeout: float | None = None
    connect_timeout: float = 10.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    credentials_retry: float = 300.0  # wrong credentials: retry this slowly
    unbind_timeout: float = 2.0  # wait this long for unbind_resp when closing
    throttle_pause: float = 1.0  # seconds without submits after ESME_RTHROTTLED/RMSGQFUL
    throttle_recovery: float = 0.5  # rate growth per second after a throttle (x1.5/s)
    mo_timeout: float = 120.0  # then an MO with parts missing is handed over (complete=False)
    inbound_queue: int = 64  # deliver_sm awaiting the handler before we stop reading
    tls: bool = False
    ca_file: str | None = None  # trust these CAs instead of the system store
    tls_server_name: str | None = None  # name checked in the certificate (default: host)
    tls_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"smpp {self.name}: window must be >= 1, got {self.window}")
        if self.throughput is not None and self.throughput <= 0:
            raise ValueError(f"smpp {self.name}: throughput must be > 0, got {self.throughput}")
        if self.wait_bound_timeout is not None and self.wait_bound_timeout < 0:
            raise ValueError(
                f"smpp {self.name}: wait_bound_timeout must be >= 0, got {self.wait_bound_timeout}"
            )

    def ssl_context(self) -> ssl.SSLContext | None:
        """Certificate and host name are always checked when TLS is on."""
        if self.tls_context is not None:
            return self.tls_context
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx
