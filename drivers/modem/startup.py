"""Modem start-up: identify, PIN, SIM-busy backoff, PDU mode, storage and indications chosen
from what the modem reports, SMSC address, and the messages already stored.

The sequence is the one python-gsmmodem, Gammu and smstools3 converge on (protocols.md §5.8):
``AT`` (wake), ``ATE0``, ``AT+CMEE=1``, identify, ``AT^CURC=0`` on Huawei, ``AT+CPIN?`` (+PIN),
``AT+CFUN=1``, ``AT+CMGF=0``, ``AT+CPMS`` from ``=?``, ``AT+CNMI`` from ``=?`` (fallbacks down
to AT+CMGL polling), ``AT+CSCA?``, then ``AT+CMGL=4`` so nothing inbound is lost across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from drivers.modem.at import Command, Response
from drivers.modem.config import Indications
from drivers.modem.errors import CmeError, CmsError, CommandTimeout, ModemError, StartupFailed
from drivers.modem.responses import choose_storages, cnmi_candidates, parse_csca, parse_groups

if TYPE_CHECKING:
    from drivers.modem.client import ModemClient

_BUSY_CME = frozenset({14, 515})  # TS 27.007: SIM busy; vendor "init in progress"
_BUSY_CMS = frozenset({314})  # TS 27.005 §3.2.5: SIM busy


def _is_busy(resp: Response) -> bool:
    err = resp.error()
    if isinstance(err, CmeError):
        return err.code in _BUSY_CME
    if isinstance(err, CmsError):
        return int(err.code) in _BUSY_CMS
    return False


async def _busy(m: ModemClient, command: Command | str) -> Response:
    """Run a command, waiting out "SIM busy" / "init in progress" with capped backoff
    (field-failures.md §12: the SIM is busy for ~10 s after the PIN)."""
    cmd = m.command_for(command) if isinstance(command, str) else command
    loop = asyncio.get_running_loop()
    give_up = loop.time() + m.config.sim_busy_timeout
    delay = 0.05
    while True:
        resp = await m.run(cmd)
        if not _is_busy(resp) or loop.time() >= give_up:
            return resp
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def _wake(m: ModemClient) -> None:
    # smstools3 needs_wakeup_at: "After being idle, some modems do not answer to the first AT".
    for _ in range(3):
        try:
            if (await m.run(Command("AT", timeout=m.config.command_timeout))).ok:
                return
        except CommandTimeout:
            continue
    raise StartupFailed(f"{m.name}: no answer to AT on {m.port}")


async def _value(m: ModemClient, text: str) -> str:
    resp = (await _busy(m, text)).check()
    return resp.lines[-1].split(":", 1)[-1].strip() if resp.lines else ""


async def identify(m: ModemClient) -> None:
    from drivers.modem.client import ModemIdentity, _WrongModem

    imei = await _value(m, "AT+CGSN")
    if m.config.imei is not None and imei != m.config.imei:
        raise _WrongModem(f"{m.port} holds IMEI {imei}, looking for {m.config.imei}")
    m.identity = ModemIdentity(
        manufacturer=await _value(m, "AT+CGMI"),
        model=await _value(m, "AT+CGMM"),
        revision=await _value(m, "AT+CGMR"),
        imei=imei,
        imsi="",
    )


async def _pin(m: ModemClient) -> None:
    cmd = Command(
        "AT+CPIN?",
        timeout=m.config.command_timeout,
        implicit_ok_after="+CPIN:",  # Wavecom: no OK after +CPIN:
        implicit_grace=m.config.wavecom_cpin_grace,
    )
    resp = (await _busy(m, cmd)).check()
    state = (resp.info("+CPIN") or ["READY"])[0].upper()
    if state == "READY":
        return
    if state != "SIM PIN":
        raise StartupFailed(f"{m.name}: SIM needs {state}; an operator must act", retry=False)
    if m.config.pin is None:
        raise StartupFailed(f"{m.name}: SIM PIN required but no pin configured", retry=False)
    # One attempt only: retrying a wrong PIN locks the SIM (PUK).
    if not (await m.run(m.command_for(f'AT+CPIN="{m.config.pin}"'))).ok:
        raise StartupFailed(f"{m.name}: the SIM rejected the configured PIN", retry=False)


async def _storage(m: ModemClient) -> None:
    resp = await _busy(m, "AT+CPMS=?")
    if not resp.ok or not resp.info("+CPMS"):
        return  # keep the modem's storage (Nokia N79: no +CPMS)
    groups = parse_groups(resp.info("+CPMS")[0])
    chosen = choose_storages(groups)
    # Status reports stored apart (Wavecom "SR", TS 27.005 §3.1 <mem>): listed at start-up too.
    m.report_storage = "SR" if groups and "SR" in groups[0] else None
    for attempt in (chosen, chosen[:1]):
        if attempt:
            args = ",".join(f'"{s}"' for s in attempt)
            if (await _busy(m, f"AT+CPMS={args}")).ok:
                m.storages = attempt
                return


async def _indications(m: ModemClient) -> None:
    """Stored mode (+CMTI, durable) whenever the modem offers it; routed mode (+CMT) only when
    it offers no stored setting and the operator allowed routing; else AT+CMGL=4 polling."""
    resp = await _busy(m, "AT+CSMS?")
    if resp.ok and resp.info("+CSMS"):
        # TS 27.005 §3.2.1: service 1 -> routed +CMT/+CDS must be acknowledged by +CNMA.
        m.needs_cnma = resp.info("+CSMS")[0].split(",")[0].strip() == "1"
    resp = await _busy(m, "AT+CNMI=?")
    if resp.ok and resp.info("+CNMI"):
        allow_route = m.config.indications == Indications.ROUTE
        for setting in cnmi_candidates(parse_groups(resp.info("+CNMI")[0]), allow_route):
            text = "AT+CNMI=" + ",".join(map(str, setting))
            if (await _busy(m, text)).ok:
                m.cnmi = setting
                m.polling = False
                return
    m.cnmi = None
    m.polling = True  # Nokia N79-style: no indications at all -> AT+CMGL=4 polling


async def start_up(m: ModemClient) -> None:
    m.cmms_on = False
    await _wake(m)
    await m.run(m.command_for("ATE0"))  # echo off; the channel copes if it stays on
    await m.run(m.command_for("AT+CMEE=1"))  # numeric +CME/+CMS codes
    await identify(m)
    assert m.identity is not None
    if "huawei" in m.identity.manufacturer.lower():
        await m.run(m.command_for("AT^CURC=0"))  # Gammu F_HUAWEI_INIT: silence ^RSSI/^BOOT/^MODE
    await _pin(m)
    await _busy(m, "AT+CFUN=1")  # radio on (smstools3 RADIO_OFF_ON); Wavecom then says 515
    imsi = await _busy(m, "AT+CIMI")
    if imsi.ok and imsi.lines:
        m.identity = m.identity.__class__(
            m.identity.manufacturer, m.identity.model, m.identity.revision, m.identity.imei,
            imsi.lines[-1],
        )
    (await _busy(m, "AT+CMGF=0")).check()  # PDU mode (TS 27.005 §3.2.3)
    await _storage(m)
    await _indications(m)
    csca = await _busy(m, "AT+CSCA?")
    m.smsc = m.config.smsc or (parse_csca(csca.info("+CSCA")[0]) if csca.info("+CSCA") else None)
    await m.read_all_stored()
    with contextlib.suppress(ModemError):
        await m.poll_health()


async def reinitialise(m: ModemClient) -> None:
    """After ATZ (lock held): the volatile settings again, no identification or PIN."""
    m.cmms_on = False
    for text in ("ATE0", "AT+CMEE=1", "AT+CMGF=0"):
        await m.execute(m.command_for(text))
    if m.storages:
        await m.execute(m.command_for("AT+CPMS=" + ",".join(f'"{s}"' for s in m.storages)))
    if m.cnmi is not None:
        await m.execute(m.command_for("AT+CNMI=" + ",".join(map(str, m.cnmi))))
