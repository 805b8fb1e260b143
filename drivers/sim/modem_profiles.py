"""Device profiles for the modem simulator: real modems' behaviour as data, not subclasses.

Sources: python-gsmmodem's fake-modem profiles of real devices (Huawei E1752, Wavecom Multiband
900E/1800, Nokia N79), Gammu's per-model flags and SIMCom manuals, as summarised in
``../shared/reference/protocols.md`` §5.3, §5.4 and §5.8.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class ModemProfile:
    name: str
    manufacturer: str
    model: str
    revision: str
    echo: bool = True  # factory default ATE1: the driver must cope until it sends ATE0
    eol: bytes = b"\r\n"  # Huawei E1752 puts an extra "\r" into its lines
    unsupported: str = "ERROR"  # Huawei E1752: "COMMAND NOT SUPPORT"
    cpin_ok: bool = True  # Wavecom: "+CPIN: READY" without a final OK
    cfun_busy_seconds: float = 0.0  # Wavecom: +CME ERROR: 515 for a while after AT+CFUN=1
    # AT+CPMS=? answer (TS 27.005 §3.2.2): storages allowed for mem1, mem2, mem3.
    storages: tuple[tuple[str, ...], ...] = (("SM", "ME", "MT"),) * 3
    # AT+CNMI=? answer as value sets per parameter (mode, mt, bm, ds, bfr); None: unsupported
    # (Nokia N79: "AT+CNMI and AT+CPMS unsupported" -> the driver falls back to AT+CMGL polling).
    cnmi: tuple[tuple[int, ...], ...] | None = ((0, 1, 2), (0, 1, 2, 3), (0, 2), (0, 1, 2), (0, 1))
    csms_service: int = 0  # TS 27.005 §3.2.1: 1 means +CMT/+CDS must be acknowledged by +CNMA
    index_base: int = 1  # Gammu F_SMS_LOCATION_0: many Huawei sticks count storage from 0
    huawei_urcs: bool = False  # ^RSSI/^BOOT/^MODE until AT^CURC=0
    start_up_lines: tuple[str, ...] = ()  # SIM800: "RDY", "Call Ready", "SMS Ready"
    cmms: bool = True  # AT+CMMS (TS 27.005 §3.5.6) supported


PROFILES: dict[str, ModemProfile] = {
    p.name: p
    for p in (
        ModemProfile("generic", "Generic", "GSM 27.005 modem", "1.0"),
        ModemProfile(
            "huawei-e1752",
            "huawei",
            "E1752",
            "11.126.13.00.00",
            eol=b"\r\r\n",
            unsupported="COMMAND NOT SUPPORT",
            index_base=0,
            huawei_urcs=True,
            cmms=False,
        ),
        ModemProfile(
            "wavecom",
            "WAVECOM MODEM",
            "MULTIBAND  900E  1800",
            "641b09gg.Q2403A",
            cpin_ok=False,
            cfun_busy_seconds=0.5,
            # python-gsmmodem: Wavecom supports (("SM","BM","SR"),("SM")): "SR" only for mem1.
            storages=(("SM", "BM", "SR"), ("SM",), ("SM",)),
            cnmi=((0, 1, 2, 3), (0, 1, 2, 3), (0, 2), (0, 1, 2), (0, 1)),
        ),
        ModemProfile(
            "sim800",
            "SIMCOM_Ltd",
            "SIMCOM_SIM800L",
            "Revision:1418B05SIM800L24",
            storages=(("SM", "ME", "SM_P", "ME_P", "MT"),) * 3,
            # SIM800 manual: <ds> 0..1 only, so status reports come routed as +CDS.
            cnmi=((0, 1, 2, 3), (0, 1, 2, 3), (0, 2), (0, 1), (0, 1)),
            start_up_lines=("RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"),
        ),
        ModemProfile(
            "polling",
            "Nokia",
            "Nokia N79",
            "V 31.0.016",
            cnmi=None,
            cmms=False,
        ),
    )
}


def profile(name: str, **overrides: object) -> ModemProfile:
    """A named profile, optionally with some parameters changed (``csms_service=1``...)."""
    try:
        base = PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown modem profile {name!r}; known: {', '.join(PROFILES)}") from None
    return replace(base, **overrides)  # type: ignore[arg-type]
