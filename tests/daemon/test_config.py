"""Configuration: typed loading, secrets from the environment, errors with the right line."""

from __future__ import annotations

import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Config, ConfigError, load_config
from gateway.config_lines import key_lines
from gateway.outbox_ids import IdFormat

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "smsgate.toml"
EXAMPLE_ENV = {
    "SMSGATE_CARRIER_A_PASSWORD": "secret",
    "SMSGATE_MODEM_1_PIN": "1234",
    "SMSGATE_HASH_KEY": "k" * 32,
}

MINIMAL = """\
[database]
path = "gw.db"
"""

FULL = """\
# comment line
[database]
path = "gw.db"

[[smpp]]
name = "a"
host = "127.0.0.1"
system_id = "shop"
password = "pw"

[[smpp]]
name = "b"
host = "127.0.0.1"
port = 2776
system_id = "shop"
password_env = "B_PASS"
window = 64
throughput = 12.5
id_format = "hex/dec"
concat = "sar"

[[modem]]
name = "m1"
port = "/dev/ttyUSB0"
groups = ["uk"]
day_reset = "06:30"

[[route]]
prefix = "+44"
via = ["b", "uk", "a"]

[[route]]
prefix = "+"
via = ["modems"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "smsgate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def fails(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env or {})
    return info.value


def test_minimal_config_has_defaults_and_resolves_relative_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), {})
    assert isinstance(config, Config)
    assert config.database.path == tmp_path.resolve() / "gw.db"
    assert config.smpp == () and config.modem == () and config.route == ()
    assert config.daemon.max_retries == 5
    assert config.logging.level == "info"


def test_full_config_is_typed(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL), {"B_PASS": "from-env"})
    a, b = config.smpp
    assert (a.name, a.port, a.password, a.window, a.bind) == ("a", 2775, "pw", 32, "transceiver")
    assert (b.port, b.password, b.window, b.throughput, b.concat) == (
        2776, "from-env", 64, 12.5, "sar"
    )
    assert b.id_format == IdFormat("hex", "dec")
    (m1,) = config.modem
    assert m1.groups == ("modems", "uk")
    assert m1.day_reset == time(6, 30)
    assert config.route[0].via == ("b", "uk", "a")
    assert config.groups() == {"modems": ("m1",), "uk": ("m1",)}


BIND = MINIMAL + """
[[smpp]]
name = "a"
host = "127.0.0.1"
system_id = "shop"
"""


def test_smpp_timeouts_and_resend_unknown_default_and_parse(tmp_path: Path) -> None:
    from gateway.routes import driver_smpp_config

    default = load_config(write(tmp_path, BIND), {})
    assert default.smpp[0].wait_bound_timeout_s is None
    assert default.smpp[0].mo_timeout_s == 120.0
    assert default.daemon.resend_unknown is False
    text = (BIND + "wait_bound_timeout_s = 2.5\nmo_timeout_s = 30\n"
            + "\n[daemon]\nresend_unknown = true\n")
    config = load_config(write(tmp_path, text), {})
    assert (config.smpp[0].wait_bound_timeout_s, config.smpp[0].mo_timeout_s) == (2.5, 30.0)
    assert config.daemon.resend_unknown is True
    driver = driver_smpp_config(config.smpp[0])
    assert (driver.wait_bound_timeout, driver.mo_timeout) == (2.5, 30.0)
    assert driver_smpp_config(default.smpp[0]).wait_bound_timeout is None


@pytest.mark.parametrize(
    ("extra", "key", "line", "expect"),
    [
        ("wait_bound_timeout_s = 0\n", "smpp[0].wait_bound_timeout_s", 8, "> 0"),
        ("wait_bound_timeout_s = \"5\"\n", "smpp[0].wait_bound_timeout_s", 8, "number"),
        ("mo_timeout_s = -1\n", "smpp[0].mo_timeout_s", 8, "> 0"),
        ("\n[daemon]\nresend_unknown = 1\n", "daemon.resend_unknown", 10, "true or false"),
        ("\n[segments]\ncache_mb = 4\n", "segments.cache_mb", 10, "integer >= 8"),
        ("\n[segments]\ncache_mb = \"1G\"\n", "segments.cache_mb", 10, "expected an integer"),
    ],
)
def test_new_keys_errors_name_key_and_line(
    tmp_path: Path, extra: str, key: str, line: int, expect: str
) -> None:
    err = fails(tmp_path, BIND + extra)
    assert (err.key, err.line) == (key, line), str(err)
    assert expect in err.message


def test_the_segment_store_cache_defaults_to_what_the_benchmark_measures(
        tmp_path: Path) -> None:
    from gateway.config import SEGMENT_CACHE_MB

    assert load_config(write(tmp_path, BIND), {}).segments.cache_mb == SEGMENT_CACHE_MB == 384
    config = load_config(write(tmp_path, BIND + "\n[segments]\ncache_mb = 128\n"), {})
    assert config.segments.cache_mb == 128


def test_secrets_are_not_in_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL), {"B_PASS": "from-env"})
    assert "from-env" not in repr(config)
    assert "'pw'" not in repr(config)


def test_example_config_loads(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, EXAMPLE_ENV)
    assert config.database.path == Path("/var/lib/smsgate/smsgate.db")
    assert [s.name for s in config.smpp] == ["carrier-a"]
    assert [m.name for m in config.modem] == ["modem-1", "modem-2"]
    assert config.smpp[0].password == "secret"
    assert config.modem[0].pin == "1234"
    assert config.segments.hash_key == "k" * 32
    assert config.keywords.help_contact == "shop.example or 0800 000 000"
    assert config.keywords.frequency == "Up to 4 msgs/month"
    assert config.keywords.start_confirmation.startswith("{brand}: you are subscribed again.")


def test_missing_environment_variable_is_named_with_its_line(tmp_path: Path) -> None:
    err = fails(tmp_path, FULL)
    assert "B_PASS" in err.message
    assert err.key == "smpp[1].password_env"
    assert err.line == 16


def test_env_is_read_at_load_time_not_import_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, FULL)
    monkeypatch.setenv("B_PASS", "first")
    assert load_config(path).smpp[1].password == "first"
    monkeypatch.setenv("B_PASS", "second")
    assert load_config(path).smpp[1].password == "second"


@pytest.mark.parametrize(
    ("replace", "by", "key", "line", "expect"),
    [
        # wrong type in the second element of an array of tables
        ('window = 64', 'window = "64"', "smpp[1].window", 17, "integer"),
        ('window = 64', 'window = true', "smpp[1].window", 17, "integer"),
        ('window = 64', 'window = 0', "smpp[1].window", 17, ">= 1"),
        ('port = 2776', 'port = 70000', "smpp[1].port", 14, "<= 65535"),
        # typo: an unknown key in a nested table
        ('throughput = 12.5', 'througput = 12.5', "smpp[1].througput", 18, "unknown key"),
        ('concat = "sar"', 'concat = "udh7"', "smpp[1].concat", 20, "udh8"),
        ('id_format = "hex/dec"', 'id_format = "hex/oct"', "smpp[1].id_format", 19, "hex"),
        ('day_reset = "06:30"', 'day_reset = "6.30"', "modem[0].day_reset", 26, "HH:MM"),
        ('via = ["modems"]', 'via = ["modems", "nope"]', "route[1].via", 34, "'nope'"),
        ('via = ["b", "uk", "a"]', 'via = []', "route[0].via", 30, "at least one"),
        ('prefix = "+44"', 'prefix = "44x"', "route[0].prefix", 29, "digits"),
        ('host = "127.0.0.1"\nport = 2776', 'port = 2776', "smpp[1].host", 11, "missing"),
    ],
)
def test_errors_name_key_and_line(
    tmp_path: Path, replace: str, by: str, key: str, line: int, expect: str
) -> None:
    assert replace in FULL
    err = fails(tmp_path, FULL.replace(replace, by, 1), {"B_PASS": "x"})
    assert err.key == key
    assert err.line == line, str(err)
    assert expect in err.message
    assert str(err).startswith(f"{tmp_path / 'smsgate.toml'}:{line}: {key}: ")


def test_unknown_top_level_table(tmp_path: Path) -> None:
    err = fails(tmp_path, MINIMAL + "\n[deamon]\nmax_retries = 3\n")
    assert (err.key, err.line, err.message) == ("deamon", 4, "unknown key")


def test_unknown_key_in_a_later_table(tmp_path: Path) -> None:
    err = fails(tmp_path, MINIMAL + "\n[daemon]\nmax_retries = 3\nmax_retry = 3\n")
    assert (err.key, err.line) == ("daemon.max_retry", 6)


def test_missing_database(tmp_path: Path) -> None:
    err = fails(tmp_path, "[logging]\nlevel = 'debug'\n")
    assert err.key == "database" and err.line == 1


def test_duplicate_names(tmp_path: Path) -> None:
    text = FULL.replace('name = "m1"', 'name = "a"')
    err = fails(tmp_path, text, {"B_PASS": "x"})
    assert (err.key, err.line) == ("modem[0].name", 23)
    assert "smpp[0]" in err.message


def test_group_cannot_shadow_a_bind(tmp_path: Path) -> None:
    err = fails(tmp_path, FULL.replace('groups = ["uk"]', 'groups = ["a"]'), {"B_PASS": "x"})
    assert err.key == "modem[0].groups"


def test_route_via_modems_needs_a_modem(tmp_path: Path) -> None:
    err = fails(tmp_path, MINIMAL + '[[route]]\nprefix = "+"\nvia = ["modems"]\n')
    assert (err.key, err.line) == ("route[0].via", 5)


def test_password_and_password_env_together(tmp_path: Path) -> None:
    text = FULL.replace('password = "pw"', 'password = "pw"\npassword_env = "X"')
    err = fails(tmp_path, text, {"X": "y", "B_PASS": "x"})
    assert (err.key, err.line) == ("smpp[0].password_env", 10)


def test_modem_needs_port_or_imei(tmp_path: Path) -> None:
    err = fails(tmp_path, FULL.replace('port = "/dev/ttyUSB0"', 'imei = "12"\nport = "/d"'),
                {"B_PASS": "x"})
    assert (err.key, err.line) == ("modem[0]", 22)


def test_syntax_error_carries_line(tmp_path: Path) -> None:
    err = fails(tmp_path, MINIMAL + "\n[daemon]\nmax_retries = = 3\n")
    assert err.line == 5
    assert "TOML syntax error" in err.message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml", {})
    assert "cannot read" in info.value.message


def test_key_lines_nested_arrays_and_multiline_values() -> None:
    text = """\
a = [
  "x = 1",
  2,
]
s = '''
[fake]
y = 2
'''
[[t]]
k = 1
[[t.u]]
v = 1
[[t.u]]
v = 2
[[t]]
k = 2
[[t.u]]
v = 3
[t.w]
z.q = { r = 1 }
"""
    lines = key_lines(text)
    assert lines[("a",)] == 1 and lines[("s",)] == 5
    assert ("fake",) not in lines and ("y",) not in lines
    assert lines[("t", 0, "k")] == 10
    assert lines[("t", 0, "u", 1, "v")] == 14
    assert lines[("t", 1, "k")] == 16
    assert lines[("t", 1, "u", 0, "v")] == 18
    assert lines[("t", 1, "w", "z", "q")] == 20


_bare_key = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@given(st.lists(st.lists(_bare_key, min_size=1, max_size=4, unique=True), min_size=1, max_size=4))
def test_key_lines_finds_every_key_of_arrays_of_tables(tables: list[list[str]]) -> None:
    out: list[str] = []
    expected: dict[tuple[str | int, ...], int] = {}
    for i, keys in enumerate(tables):
        out.append("[[item]]")
        for key in keys:
            out.append(f"{key} = {i}")
            expected[("item", i, key)] = len(out)
    assert {k: v for k, v in key_lines("\n".join(out)).items() if len(k) == 3} == expected


def test_config_check_cli(tmp_path: Path) -> None:
    good = write(tmp_path, FULL)
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "config", "check", str(good)],
        cwd=ROOT, capture_output=True, text=True, env={"B_PASS": "x", "PATH": ""},
    )
    assert r.returncode == 0, r.stderr
    assert "2 smpp" in r.stdout and "1 modem" in r.stdout and "2 route" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(FULL.replace("window = 64", "window = -1"), encoding="utf-8")
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "config", "check", str(bad)],
        cwd=ROOT, capture_output=True, text=True, env={"B_PASS": "x", "PATH": ""},
    )
    assert r.returncode == 2
    assert f"{bad}:17: smpp[1].window" in r.stderr
    assert "Traceback" not in r.stderr


def test_every_config_key_is_in_the_example() -> None:
    """The example is the reference for the file format: a key the loader accepts but the
    example does not show (even commented out) is undocumented."""
    import dataclasses
    import re

    from gateway.config import (
        DaemonConfig,
        DatabaseConfig,
        KeywordsConfig,
        LoggingConfig,
        ModemConfig,
        RouteConfig,
        SegmentsConfig,
        SmppConfig,
    )

    text = EXAMPLE.read_text(encoding="utf-8")
    sections = {
        "[database]": DatabaseConfig, "[[smpp]]": SmppConfig, "[[modem]]": ModemConfig,
        "[[route]]": RouteConfig, "[segments]": SegmentsConfig, "[keywords]": KeywordsConfig,
        "[daemon]": DaemonConfig, "[logging]": LoggingConfig,
    }
    for header, cls in sections.items():
        assert header in text, header
        # the table's own lines: up to the next table header
        body = re.split(r"^\[", text.split(header, 1)[1], maxsplit=1, flags=re.MULTILINE)[0]
        for f in dataclasses.fields(cls):
            pattern = rf"^\s*#?\s*{f.name}(_env)?\s*="
            assert re.search(pattern, body, re.MULTILINE), f"{header} {f.name} not in the example"


def test_missing_file_has_no_line_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml", {})
    assert str(info.value).startswith(f"{tmp_path / 'absent.toml'}: cannot read")


async def test_resend_unknown_reaches_the_modem_pool() -> None:
    from gateway.config import ModemConfig
    from gateway.outbox_types import Report
    from gateway.routes import ModemRoute, RouteInbound

    async def ignore(_: RouteInbound | Report) -> None:
        return None

    modems = [ModemConfig("m1", port="/dev/null")]
    for wanted in (False, True):
        route = ModemRoute("modems", modems, on_report=ignore, on_inbound=ignore,
                           on_health=lambda _n, _u: None, resend_unknown=wanted)
        assert route.pool.resend_unknown is wanted
