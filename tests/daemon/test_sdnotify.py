"""sd_notify client against a real AF_UNIX datagram socket bound by the test."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sdnotify import Notifier, keep_alive, socket_address, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    # AF_UNIX paths are limited to 108 bytes; a short folder of our own keeps us under it.
    path = tmp_path / "notify"
    if len(str(path)) > 100:
        pytest.fail(f"tmp_path too long for AF_UNIX: {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        yield sock, str(path)
    finally:
        sock.close()


@pytest.fixture
def abstract_listener() -> Iterator[tuple[socket.socket, str]]:
    name = f"smsgate-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_status_watchdog_stopping_over_a_path_socket(
    listener: tuple[socket.socket, str],
) -> None:
    sock, name = listener
    n = Notifier({"NOTIFY_SOCKET": name})
    try:
        assert n.enabled
        assert n.ready("2 binds up")
        assert received(sock) == ["READY=1", "STATUS=2 binds up"]
        assert n.status("draining\nnow")
        assert received(sock) == ["STATUS=draining now"]  # one value, never a new assignment
        assert n.watchdog()
        assert received(sock) == ["WATCHDOG=1"]
        assert n.stopping()
        assert received(sock) == ["STOPPING=1"]
        assert n.statistics().sent == 4
    finally:
        n.close()


def test_abstract_socket_names(abstract_listener: tuple[socket.socket, str]) -> None:
    sock, name = abstract_listener
    assert socket_address(name) == b"\0" + name[1:].encode()
    n = Notifier({"NOTIFY_SOCKET": name})
    try:
        assert n.ready()
        assert received(sock) == ["READY=1"]
    finally:
        n.close()


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "relative"}])
def test_no_op_when_not_under_systemd(environ: dict[str, str]) -> None:
    n = Notifier(environ)
    assert not n.enabled
    assert not n.ready("x")
    assert not n.watchdog()
    assert n.statistics().sent == 0
    assert n.statistics().failed == 0


def test_a_vanished_socket_is_a_false_not_an_exception(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.enabled
    assert not n.ready()
    assert n.statistics().failed == 1
    n.close()


@pytest.mark.parametrize(
    ("environ", "pid", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 7, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 7, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 7, None),  # meant for another
        ({"WATCHDOG_USEC": "0"}, 7, None),
        ({"WATCHDOG_USEC": "abc"}, 7, None),
        ({}, 7, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], pid: int, expected: float | None) -> None:
    assert watchdog_interval(environ, pid) == expected


def test_notifier_reads_the_watchdog_for_this_process() -> None:
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(env).watchdog_interval == 1.0


async def test_keep_alive_pings_on_the_event_loop(listener: tuple[socket.socket, str]) -> None:
    sock, name = listener
    sock.setblocking(False)
    n = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "20000"})  # ping every 10 ms
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(5):
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(keep_alive(n))
                for _ in range(3):
                    assert await loop.sock_recv(sock, 64) == b"WATCHDOG=1"
                task.cancel()
    finally:
        n.close()


class Stop(Exception):
    pass


async def test_keep_alive_skips_pings_while_unhealthy(
    listener: tuple[socket.socket, str],
) -> None:
    sock, name = listener
    sock.setblocking(False)
    n = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "30000000"})
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 6:
            raise Stop

    try:
        with pytest.raises(Stop):
            await keep_alive(n, lambda: len(waits) % 2 == 0, sleep=sleep)
    finally:
        n.close()
    assert waits == [15.0] * 6  # half of WATCHDOG_USEC
    pings = []
    while True:
        try:
            pings.append(sock.recv(64))
        except BlockingIOError:
            break
    assert pings == [b"WATCHDOG=1"] * 3  # only the healthy rounds 0, 2, 4


async def test_keep_alive_returns_when_the_watchdog_is_off(
    listener: tuple[socket.socket, str],
) -> None:
    _, name = listener
    async with asyncio.timeout(1):
        await keep_alive(Notifier({"NOTIFY_SOCKET": name}))
        await keep_alive(Notifier({"WATCHDOG_USEC": "1000"}))
