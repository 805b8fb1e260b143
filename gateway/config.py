"""The daemon's configuration: one TOML file loaded once into frozen, typed objects.

``load_config(path)`` is the only entry point. It reads the file, resolves secrets from the
environment variables named by ``*_env`` keys (at load time, never at import time), checks every
value, cross-checks names (a route's ``via`` must name existing binds, modems or groups) and
returns a :class:`Config`. Any problem raises :class:`ConfigError` carrying the file, the key
path (``smpp[1].window``), the line number and what was expected; unknown keys are errors so a
typo is never silently ignored. Relative paths are resolved against the config file's folder.

The shape is the contract in DESIGN.md ("Config"); each driver gets its own small object
(:class:`SmppConfig`, :class:`ModemConfig`) so it never sees the rest.
"""

from __future__ import annotations

import enum
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Literal, cast, get_args, overload

from gateway.config_lines import KeyPath, key_lines, line_of
from gateway.errors import SmsgateError
from gateway.outbox_ids import IdConvention, IdFormat

BindType = Literal["transmitter", "receiver", "transceiver", "pair"]
ConcatMethod = Literal["udh8", "udh16", "sar", "payload"]
LogLevel = Literal["debug", "info", "warning", "error"]

_HEX_IDS = IdFormat("hex", "hex")

MODEMS_GROUP = "modems"
"""Every modem is in this group (DESIGN.md, "Config")."""


class ConfigError(SmsgateError, ValueError):
    """A configuration file that cannot be used, with where and why."""

    def __init__(self, file: Path, line: int, key: str, message: str) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        where = f"{file}:{line}" if line > 0 else str(file)
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    path: Path


@dataclass(frozen=True, slots=True)
class SmppConfig:
    """One carrier bind (SMPP 3.4 §4.1 bind operations)."""

    name: str
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str = ""
    bind: BindType = "transceiver"
    window: int = 32
    throughput: float | None = None
    tls: bool = False
    ca_file: Path | None = None
    concat: ConcatMethod = "udh8"
    id_format: IdFormat = _HEX_IDS
    enquire_link_s: float = 30.0
    response_timeout_s: float = 10.0
    # A submit waits this long for a bound link, then the route refuses it (the dispatcher
    # tries the next route); None: wait as long as the dispatch timeout allows.
    wait_bound_timeout_s: float | None = None
    mo_timeout_s: float = 120.0  # a multipart MO with parts missing is stored after this


@dataclass(frozen=True, slots=True)
class ModemConfig:
    """One USB GSM modem, found by port or by IMEI (ports renumber on replug)."""

    name: str
    port: str | None = None
    imei: str | None = None
    baudrate: int = 115200
    pin: str | None = field(default=None, repr=False)
    rate_per_minute: float = 10.0
    per_day: int | None = None
    day_reset: time = time(0, 0)
    jitter_s: float = 0.0
    groups: tuple[str, ...] = (MODEMS_GROUP,)
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """Destinations starting with ``prefix`` (and from ``sender``, if set) go ``via`` these."""

    prefix: str
    via: tuple[str, ...]
    sender: str | None = None


SEGMENT_CACHE_MB = 384
"""The default of ``[segments] cache_mb``."""


@dataclass(frozen=True, slots=True)
class SegmentsConfig:
    default_region: str | None = None
    hash_key: str | None = field(default=None, repr=False)
    cache_mb: int = SEGMENT_CACHE_MB
    """The segment store writer's SQLite page cache (MB): filled only as the database grows;
    bench/segments.py measures 1M subscribers / 10M events with it."""


@dataclass(frozen=True, slots=True)
class KeywordsConfig:
    brand: str = "smsgate"
    help_text: str = (
        "{brand}: for help reply HELP. Msg frequency varies. Msg & data rates may apply. "
        "Reply STOP to cancel."
    )
    stop_confirmation: str = "{brand}: you are unsubscribed and will receive no more messages."
    help_contact: str = ""  # filled into {contact}: a web address or phone number for help
    frequency: str = "Msg frequency varies"  # filled into {frequency}
    start_confirmation: str = (
        "{brand}: you are subscribed again. {frequency}. Msg & data rates may apply. "
        "Reply HELP for help, STOP to cancel."
    )


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    drain_timeout_s: float = 10.0
    dlr_unknown_after_s: float = 48 * 3600.0
    max_retries: int = 5
    # Modem pools: move a part whose AT+CMGS got no answer to another modem (a possible
    # duplicate) instead of reporting it unknown (drivers/modem/pool.py).
    resend_unknown: bool = False


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: LogLevel = "info"


@dataclass(frozen=True, slots=True)
class Config:
    source: Path
    database: DatabaseConfig
    smpp: tuple[SmppConfig, ...] = ()
    modem: tuple[ModemConfig, ...] = ()
    route: tuple[RouteConfig, ...] = ()
    segments: SegmentsConfig = SegmentsConfig()
    keywords: KeywordsConfig = KeywordsConfig()
    daemon: DaemonConfig = DaemonConfig()
    logging: LoggingConfig = LoggingConfig()

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Modem group name -> modem names, in config order (``modems`` holds every modem)."""
        out: dict[str, list[str]] = {}
        for modem in self.modem:
            for group in modem.groups:
                out.setdefault(group, []).append(modem.name)
        return {name: tuple(members) for name, members in out.items()}


class _Missing(enum.Enum):
    MISSING = enum.auto()


_MISSING = _Missing.MISSING


class _Reader:
    """Typed access to one TOML table that remembers which keys were read.

    Each accessor takes an optional default: without one the key is required, with ``None`` it
    is optional. ``done()`` rejects every key that was not read: that is how unknown keys
    become errors.
    """

    def __init__(self, loader: _Loader, data: Mapping[str, object], path: KeyPath) -> None:
        self._loader = loader
        self._data = data
        self._path = path
        self._read: set[str] = set()

    def error(self, key: str | None, message: str) -> ConfigError:
        path = self._path if key is None else (*self._path, key)
        return self._loader.error(path, message)

    def has(self, key: str) -> bool:
        return key in self._data

    def _get(self, key: str, default: object, expected: str) -> object:
        self._read.add(key)
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise self.error(key, f"missing: expected {expected}")
            return default
        return value

    @overload
    def string(self, key: str, default: str | _Missing = _MISSING) -> str: ...
    @overload
    def string(self, key: str, default: None) -> str | None: ...
    def string(self, key: str, default: str | _Missing | None = _MISSING) -> str | None:
        value = self._get(key, default, "a string")
        if value is None or value is default:
            return default if isinstance(default, str) else None
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_kind(value)}")
        return value

    def required_string(self, key: str) -> str:
        value = self.string(key)
        if not value.strip():
            raise self.error(key, "expected a non-empty string")
        return value

    @overload
    def integer(self, key: str, default: int | _Missing = _MISSING, *, minimum: int = 0,
                maximum: int | None = None) -> int: ...
    @overload
    def integer(self, key: str, default: None, *, minimum: int = 0,
                maximum: int | None = None) -> int | None: ...
    def integer(self, key: str, default: int | _Missing | None = _MISSING, *, minimum: int = 0,
                maximum: int | None = None) -> int | None:
        value = self._get(key, default, "an integer")
        if value is None or value is default:
            return default if isinstance(default, int) else None
        # bool is an int subclass in Python; `window = true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_kind(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise self.error(key, f"expected an integer >= {minimum}{upper}, got {value}")
        return value

    @overload
    def number(self, key: str, default: float | _Missing = _MISSING, *,
               positive: bool = False) -> float: ...
    @overload
    def number(self, key: str, default: None, *, positive: bool = False) -> float | None: ...
    def number(self, key: str, default: float | _Missing | None = _MISSING, *,
               positive: bool = False) -> float | None:
        value = self._get(key, default, "a number")
        if value is None or value is default:
            return float(default) if isinstance(default, float | int) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {_kind(value)}")
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise self.error(key, f"expected a finite number, got {value}")
        if positive and number <= 0:
            raise self.error(key, f"expected a number > 0, got {value}")
        if number < 0:
            raise self.error(key, f"expected a number >= 0, got {value}")
        return number

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default, "true or false")
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_kind(value)}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.string(key, default)
        if value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def strings(self, key: str, default: tuple[str, ...] | _Missing = _MISSING) -> tuple[str, ...]:
        value = self._get(key, default, "a list of strings")
        if isinstance(value, tuple):
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"expected a list of strings, got {_kind(value)}")
        return tuple(value)

    def secret(self, key: str) -> str | None:
        """``key`` or ``key_env`` (naming an environment variable read now), not both."""
        env_key = f"{key}_env"
        direct = self.string(key, None)
        env_name = self.string(env_key, None)
        if direct is not None and env_name is not None:
            raise self.error(env_key, f"give either {key} or {env_key}, not both")
        if env_name is not None:
            value = self._loader.environ.get(env_name)
            if value is None:
                raise self.error(env_key, f"environment variable {env_name} is not set")
            return value
        return direct

    @overload
    def path(self, key: str) -> Path: ...
    @overload
    def path(self, key: str, default: None) -> Path | None: ...
    def path(self, key: str, default: _Missing | None = _MISSING) -> Path | None:
        value = self.string(key) if default is _MISSING else self.string(key, None)
        if value is None:
            return None
        if not value.strip():
            raise self.error(key, "expected a file path, got an empty string")
        path = Path(value).expanduser()
        return path if path.is_absolute() else self._loader.base / path

    def table(self, key: str) -> _Reader:
        value = self._get(key, {}, "a table")
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table [{key}], got {_kind(value)}")
        return _Reader(self._loader, value, (*self._path, key))

    def tables(self, key: str) -> list[_Reader]:
        value = self._get(key, [], "tables")
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, f"expected tables [[{key}]], got {_kind(value)}")
        return [_Reader(self._loader, v, (*self._path, key, i)) for i, v in enumerate(value)]

    def done(self) -> None:
        for key in self._data:
            if key not in self._read:
                raise self.error(key, "unknown key")


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class _Loader:
    def __init__(self, file: Path, text: str, environ: Mapping[str, str]) -> None:
        self.file = file
        self.base = file.resolve().parent
        self.environ = environ
        self.lines = key_lines(text)

    def error(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(self.file, line_of(self.lines, path), _dotted(path), message)


_SYNTAX_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
_DAY_RESET = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Load and check ``path``; secrets come from ``environ`` (default: ``os.environ`` now)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, 0, "", f"cannot read the file: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(path, line, "", "the file is not valid UTF-8") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = _SYNTAX_POSITION.search(message)
        line = int(m.group(1)) if m else 0
        detail = _SYNTAX_POSITION.sub("", message).strip()
        if m:
            detail = f"{detail} (column {m.group(2)})"
        raise ConfigError(path, line, "", f"TOML syntax error: {detail}") from exc
    loader = _Loader(path, text, os.environ if environ is None else environ)
    return _build(loader, _Reader(loader, data, ()))


def _build(loader: _Loader, top: _Reader) -> Config:
    if not top.has("database"):
        raise top.error("database", "missing: expected a [database] table with path")
    db = top.table("database")
    database = DatabaseConfig(path=db.path("path"))
    db.done()
    smpp = tuple(_smpp(t) for t in top.tables("smpp"))
    modems = tuple(_modem(t) for t in top.tables("modem"))
    route_readers = top.tables("route")
    routes = tuple(_route(t) for t in route_readers)
    segments = _segments(top.table("segments"))
    keywords = _keywords(top.table("keywords"))
    daemon = _daemon(top.table("daemon"))
    logging = _logging(top.table("logging"))
    top.done()
    config = Config(
        source=loader.file,
        database=database,
        smpp=smpp,
        modem=modems,
        route=routes,
        segments=segments,
        keywords=keywords,
        daemon=daemon,
        logging=logging,
    )
    _check_names(loader, config)
    return config


def _name(t: _Reader) -> str:
    name = t.required_string("name")
    if not _NAME.fullmatch(name):
        raise t.error("name", f"expected letters, digits, '_', '-' or '.', got {name!r}")
    return name


def _id_format(t: _Reader) -> IdFormat:
    """``"hex"`` (both the same) or ``"hex/dec"``: submit_sm_resp id / delivery-report id."""
    value = t.string("id_format", "hex")
    conventions = get_args(IdConvention)
    parts = value.split("/")
    if len(parts) > 2 or not all(p in conventions for p in parts):
        raise t.error(
            "id_format",
            f"expected CONVENTION or SUBMIT/REPORT with each one of {', '.join(conventions)}"
            f" (e.g. \"hex/dec\"), got {value!r}",
        )
    submit, report = parts[0], parts[-1]
    return IdFormat(cast(IdConvention, submit), cast(IdConvention, report))


def _smpp(t: _Reader) -> SmppConfig:
    name = _name(t)
    host = t.required_string("host")
    port = t.integer("port", 2775, minimum=1, maximum=65535)
    config = SmppConfig(
        name=name,
        host=host,
        port=port,
        system_id=t.required_string("system_id"),
        password=t.secret("password") or "",
        system_type=t.string("system_type", "") or "",
        bind=cast(BindType, t.choice("bind", get_args(BindType), "transceiver")),
        window=t.integer("window", 32, minimum=1, maximum=65535),
        throughput=t.number("throughput", None, positive=True),
        tls=t.boolean("tls", False),
        ca_file=t.path("ca_file", None),
        concat=cast(ConcatMethod, t.choice("concat", get_args(ConcatMethod), "udh8")),
        id_format=_id_format(t),
        enquire_link_s=t.number("enquire_link_s", 30.0, positive=True),
        response_timeout_s=t.number(
            "response_timeout_s", 10.0, positive=True
        ),
        wait_bound_timeout_s=t.number("wait_bound_timeout_s", None, positive=True),
        mo_timeout_s=t.number("mo_timeout_s", 120.0, positive=True),
    )
    if config.ca_file is not None and not config.tls:
        raise t.error("ca_file", "ca_file is only used with tls = true")
    # SMPP 3.4 §5.2.1 / §5.2.2: system_id is at most 15 octets, system_type at most 12.
    if len(config.system_id.encode()) > 15:
        raise t.error("system_id", "expected at most 15 characters (SMPP 3.4 §5.2.1)")
    if len(config.system_type.encode()) > 12:
        raise t.error("system_type", "expected at most 12 characters (SMPP 3.4 §5.2.2)")
    t.done()
    return config


def _modem(t: _Reader) -> ModemConfig:
    name = _name(t)
    port = t.string("port", None)
    imei = t.string("imei", None)
    if (port is None) == (imei is None):
        raise t.error(None, "expected exactly one of port or imei")
    # 3GPP TS 23.003 §6.2.1: an IMEI is 15 digits (14 + check digit); IMEISV is 16.
    if imei is not None and not re.fullmatch(r"\d{15,16}", imei):
        raise t.error("imei", f"expected 15 or 16 digits, got {imei!r}")
    day_reset = t.string("day_reset", "00:00")
    m = _DAY_RESET.fullmatch(day_reset)
    if m is None:
        raise t.error("day_reset", f"expected a time as \"HH:MM\" (24 h), got {day_reset!r}")
    pin = t.secret("pin")
    if pin is not None and not re.fullmatch(r"\d{4,8}", pin):
        # 3GPP TS 31.101 §9.2: a PIN is 4 to 8 digits.
        raise t.error("pin_env" if t.has("pin_env") else "pin", "expected 4 to 8 digits")
    groups = t.strings("groups", ())
    for group in groups:
        if not _NAME.fullmatch(group):
            raise t.error("groups", f"expected group names, got {group!r}")
    config = ModemConfig(
        name=name,
        port=port,
        imei=imei,
        baudrate=t.integer("baudrate", 115200, minimum=300),
        pin=pin,
        rate_per_minute=t.number("rate_per_minute", 10.0, positive=True),
        per_day=t.integer("per_day", None, minimum=1),
        day_reset=time(int(m.group(1)), int(m.group(2))),
        jitter_s=t.number("jitter_s", 0.0),
        groups=(MODEMS_GROUP, *dict.fromkeys(g for g in groups if g != MODEMS_GROUP)),
        profile=t.string("profile", None),
    )
    t.done()
    return config


def _route(t: _Reader) -> RouteConfig:
    prefix = t.string("prefix")
    # E.164 (ITU-T E.164 §6): '+' and up to 15 digits; "" or "+" matches every number.
    if not re.fullmatch(r"\+?\d{0,15}", prefix):
        raise t.error("prefix", f"expected '+' and digits (e.g. \"+44\"), got {prefix!r}")
    via = t.strings("via")
    if not via:
        raise t.error("via", "expected at least one smpp, modem or group name")
    config = RouteConfig(prefix=prefix, via=via, sender=t.string("sender", None))
    t.done()
    return config


def _segments(t: _Reader) -> SegmentsConfig:
    region = t.string("default_region", None)
    if region is not None and not re.fullmatch(r"[A-Z]{2}", region):
        raise t.error("default_region", f"expected an ISO 3166-1 code like \"GB\", got {region!r}")
    config = SegmentsConfig(default_region=region, hash_key=t.secret("hash_key"),
                            cache_mb=t.integer("cache_mb", SEGMENT_CACHE_MB, minimum=8,
                                               maximum=65_536))
    t.done()
    return config


def _keywords(t: _Reader) -> KeywordsConfig:
    defaults = KeywordsConfig()
    config = KeywordsConfig(
        brand=t.string("brand", defaults.brand) or defaults.brand,
        help_text=t.string("help_text", defaults.help_text) or defaults.help_text,
        stop_confirmation=t.string("stop_confirmation", defaults.stop_confirmation)
        or defaults.stop_confirmation,
        help_contact=t.string("help_contact", defaults.help_contact) or "",
        frequency=t.string("frequency", defaults.frequency) or defaults.frequency,
        start_confirmation=t.string("start_confirmation", defaults.start_confirmation)
        or defaults.start_confirmation,
    )
    t.done()
    return config


def _daemon(t: _Reader) -> DaemonConfig:
    d = DaemonConfig()
    config = DaemonConfig(
        drain_timeout_s=t.number("drain_timeout_s", d.drain_timeout_s),
        dlr_unknown_after_s=t.number(
            "dlr_unknown_after_s", d.dlr_unknown_after_s, positive=True
        ),
        max_retries=t.integer("max_retries", d.max_retries, maximum=100),
        resend_unknown=t.boolean("resend_unknown", d.resend_unknown),
    )
    t.done()
    return config


def _logging(t: _Reader) -> LoggingConfig:
    level = t.choice("level", get_args(LogLevel), "info")
    t.done()
    return LoggingConfig(level=cast(LogLevel, level))


def _check_names(loader: _Loader, config: Config) -> None:
    """Names are unique across binds, modems and groups; every route names existing ones."""
    owner: dict[str, KeyPath] = {}
    named = [("smpp", i, s.name) for i, s in enumerate(config.smpp)]
    named += [("modem", i, m.name) for i, m in enumerate(config.modem)]
    for kind, i, name in named:
        if name in owner:
            raise loader.error(
                (kind, i, "name"), f"name {name!r} is already used by {_dotted(owner[name])}"
            )
        owner[name] = (kind, i)
    for i, modem in enumerate(config.modem):
        for group in modem.groups:
            if group in owner and owner[group][0] != "group":
                raise loader.error(
                    ("modem", i, "groups"),
                    f"group {group!r} has the same name as {_dotted(owner[group])}",
                )
            owner.setdefault(group, ("group", group))
    # `modems` exists only when a modem does: a route via an empty pool is a mistake.
    known = set(owner)
    for i, route in enumerate(config.route):
        for name in route.via:
            if name not in known:
                names = ", ".join(sorted(known)) or "none are configured"
                raise loader.error(
                    ("route", i, "via"),
                    f"{name!r} is not an smpp, modem or group name (known: {names})",
                )
