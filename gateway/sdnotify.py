"""A tiny sd_notify(3) client: tell systemd we are ready, what we are doing, that we are alive.

The protocol (sd_notify(3), "Notes"): newline-separated ``KEY=VALUE`` assignments sent as one
datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET``; a name starting with ``@`` is in the
abstract namespace (its first byte is NUL on the wire). Without ``$NOTIFY_SOCKET`` we are not
under a ``Type=notify`` unit and every call does nothing, so the daemon calls it unconditionally.

The watchdog (sd_watchdog_enabled(3)): systemd sets ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``:
only that process is meant); the service must send ``WATCHDOG=1`` more often than that, and the
documented advice is every half interval. :func:`keep_alive` does that from the event loop, so a
blocked loop stops the pings and systemd restarts us, which is the point.

Only AF_UNIX addresses are supported (absolute paths and ``@`` names); the ``vsock:`` form
that newer systemd offers to virtual machines is treated as "not under systemd".

No dependency on python-systemd. Failures to send are logged at debug and reported as False:
a missing status line must never take the daemon down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)


def socket_address(name: str) -> str | bytes:
    """``$NOTIFY_SOCKET`` as an address for ``sendto``: ``@name`` is the abstract ``\\0name``."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None if off."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1_000_000 / 2


@dataclass(frozen=True, slots=True)
class NotifierStatistics:
    enabled: bool
    sent: int
    failed: int


def _one_line(text: str) -> str:
    # A newline would start a new assignment: STATUS text must stay one value.
    return " ".join(text.splitlines())


class Notifier:
    """Sends notifications to ``$NOTIFY_SOCKET`` (read once, from ``environ``, at creation)."""

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        name = env.get("NOTIFY_SOCKET", "")
        # sd_notify(3) accepts absolute paths and abstract names only.
        self._address = socket_address(name) if name[:1] in ("/", "@") else None
        self.watchdog_interval = watchdog_interval(env, os.getpid() if pid is None else pid)
        self._sock: socket.socket | None = None
        self._sent = 0
        self._failed = 0

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; True if it went out."""
        if self._address is None or not assignments:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:
            self._failed += 1
            log.debug("sd_notify failed: %s", exc)
            return False
        self._sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        extra = () if status is None else (f"STATUS={_one_line(status)}",)
        return self.notify("READY=1", *extra)

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        extra = () if status is None else (f"STATUS={_one_line(status)}",)
        return self.notify("STOPPING=1", *extra)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def statistics(self) -> NotifierStatistics:
        return NotifierStatistics(self.enabled, self._sent, self._failed)


async def keep_alive(
    notifier: Notifier,
    healthy: Callable[[], bool] = lambda: True,
    *,
    interval: float | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Ping the watchdog every ``interval`` (default: the notifier's) while ``healthy()``.

    Runs until cancelled; run it in the daemon's TaskGroup. Returns at once when the watchdog
    is off. An unhealthy check skips the ping, so systemd restarts a daemon stuck in a state
    it cannot leave by itself. ``sleep`` is injectable so tests count pings, not seconds.
    """
    every = notifier.watchdog_interval if interval is None else interval
    if every is None or not notifier.enabled:
        return
    while True:
        if healthy():
            notifier.watchdog()
        await sleep(every)
