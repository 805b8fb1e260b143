"""Routing: prefix and sender rules, groups, health, failover order, refusals."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import (
    Config,
    DatabaseConfig,
    ModemConfig,
    RouteConfig,
    SmppConfig,
    load_config,
)
from gateway.routing import (
    NoRouteError,
    Route,
    RouteKind,
    Router,
    RouteTable,
    UnknownRouteError,
)

CONFIG = """\
[database]
path = "gw.db"

[[smpp]]
name = "carrier-a"
host = "127.0.0.1"
system_id = "shop"
password = "pw"

[[smpp]]
name = "carrier-b"
host = "127.0.0.1"
system_id = "shop"
password = "pw"

[[modem]]
name = "m1"
port = "/dev/ttyUSB0"
groups = ["uk"]

[[modem]]
name = "m2"
port = "/dev/ttyUSB1"
groups = ["uk"]

[[modem]]
name = "m3"
port = "/dev/ttyUSB2"

[[route]]
prefix = "+"
via = ["carrier-a", "modems"]

[[route]]
prefix = "+44"
via = ["carrier-b", "uk", "carrier-a"]

[[route]]
prefix = "+447"
sender = "Shop"
via = ["uk", "carrier-b"]

[[route]]
prefix = "447"
via = ["m3"]

[[route]]
prefix = "+1"
sender = "Alerts"
via = ["carrier-b"]
"""


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "smsgate.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={})


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return _load(tmp_path, CONFIG)


def names(routes: tuple[Route, ...]) -> list[str]:
    return [r.name for r in routes]


def test_routes_from_config(config: Config) -> None:
    table = RouteTable.from_config(config)
    assert table.routes["carrier-a"] == Route("carrier-a", RouteKind.SMPP)
    assert table.routes["m3"] == Route("m3", RouteKind.MODEM)
    assert table.routes["uk"] == Route("uk", RouteKind.GROUP, ("m1", "m2"))
    assert table.routes["modems"] == Route("modems", RouteKind.GROUP, ("m1", "m2", "m3"))


@pytest.mark.parametrize(
    ("destination", "sender", "expected"),
    [
        # Longest prefix first: +447 (sender Shop) beats +44 beats +.
        ("+447700900123", "Shop", ["uk", "carrier-b"]),
        # +447 without the sender: "447" (same length, later in the file) wins.
        ("+447700900123", "Other", ["m3"]),
        ("+447700900123", None, ["m3"]),
        ("447700900123", None, ["m3"]),
        ("+442071838750", "Shop", ["carrier-b", "uk", "carrier-a"]),
        ("+33612345678", None, ["carrier-a", "modems"]),
        ("+12025550100", "Alerts", ["carrier-b"]),
        ("+12025550100", "alerts", ["carrier-a", "modems"]),  # sender match is exact
        ("+12025550100", None, ["carrier-a", "modems"]),
    ],
)
def test_resolve_by_prefix_and_sender(
    config: Config, destination: str, sender: str | None, expected: list[str]
) -> None:
    assert names(RouteTable.from_config(config).resolve(destination, sender)) == expected


def test_equal_prefixes_go_to_the_first_in_the_file(tmp_path: Path) -> None:
    text = CONFIG + '\n[[route]]\nprefix = "+447"\nvia = ["carrier-a"]\n'
    config = _load(tmp_path, text)
    # "447" (index 3) and "+447" without sender (index 5) are both 3 digits: index 3 wins.
    assert names(RouteTable.from_config(config).resolve("+447700900123")) == ["m3"]


def test_no_rule_is_a_no_route_error(tmp_path: Path) -> None:
    text = CONFIG.replace('prefix = "+"\n', 'prefix = "+9"\n')
    table = RouteTable.from_config(_load(tmp_path, text))
    with pytest.raises(NoRouteError) as caught:
        table.resolve("+33612345678", "Shop")
    assert caught.value.destination == "+33612345678"
    assert caught.value.sender == "Shop"


def test_no_routes_configured(tmp_path: Path) -> None:
    router = Router.from_config(_load(tmp_path, '[database]\npath = "gw.db"\n'))
    with pytest.raises(NoRouteError):
        router.choose("+33612345678")


def test_everything_starts_down(config: Config) -> None:
    router = Router.from_config(config)
    assert router.candidates("+33612345678") == ()
    assert router.choose("+33612345678") is None
    assert router.statistics().up == ()
    assert router.statistics().down == ("carrier-a", "carrier-b", "m1", "m2", "m3")


def test_down_routes_are_skipped_and_order_kept(config: Config) -> None:
    router = Router(RouteTable.from_config(config), up=["carrier-a", "carrier-b", "m1"])
    dest = "+442071838750"
    assert names(router.candidates(dest)) == ["carrier-b", "uk", "carrier-a"]
    router.set_up("carrier-b", False)
    assert names(router.candidates(dest)) == ["uk", "carrier-a"]
    router.set_up("m1", False)  # the last modem of "uk" goes: the group is down
    assert names(router.candidates(dest)) == ["carrier-a"]
    router.set_up("m2", True)  # another member comes up: the group is back
    assert names(router.candidates(dest)) == ["uk", "carrier-a"]
    router.set_up("carrier-b", True)
    assert router.choose(dest) == Route("carrier-b", RouteKind.SMPP)


def test_group_health_follows_its_members(config: Config) -> None:
    router = Router.from_config(config)
    assert not router.is_up("modems")
    router.set_up("m3", True)
    assert router.is_up("modems")
    assert not router.is_up("uk")
    with pytest.raises(ValueError, match="group"):
        router.set_up("uk", True)


def test_refusal_passes_the_message_to_the_next_route(config: Config) -> None:
    router = Router(RouteTable.from_config(config), up=["carrier-a", "carrier-b", "m2"])
    dest = "+442071838750"
    refused: list[str] = []
    tried = []
    while (route := router.choose(dest, refused=refused)) is not None:
        tried.append(route.name)
        refused.append(route.name)  # each route refuses with a route-level error
        assert len(tried) <= 3
    assert tried == ["carrier-b", "uk", "carrier-a"]


def test_refusal_is_per_message(config: Config) -> None:
    router = Router(RouteTable.from_config(config), up=["carrier-a", "carrier-b"])
    dest = "+442071838750"
    assert router.choose(dest, refused={"carrier-b"}) == Route("carrier-a", RouteKind.SMPP)
    assert router.choose(dest) == Route("carrier-b", RouteKind.SMPP)


def test_unknown_names_are_errors(config: Config) -> None:
    router = Router.from_config(config)
    with pytest.raises(UnknownRouteError):
        router.set_up("carrier-z", True)
    with pytest.raises(UnknownRouteError):
        router.is_up("carrier-z")


@given(
    ups=st.sets(st.sampled_from(["carrier-a", "carrier-b", "m1", "m2", "m3"])),
    refused=st.sets(st.sampled_from(["carrier-a", "carrier-b", "uk", "modems", "m3"])),
    destination=st.from_regex(r"\+?[0-9]{1,15}", fullmatch=True),
    sender=st.sampled_from([None, "Shop", "Alerts", "Other"]),
)
def test_candidates_are_the_rule_order_filtered(
    ups: set[str], refused: set[str], destination: str, sender: str | None
) -> None:
    config = _CONFIG_FOR_PROPERTIES
    router = Router(RouteTable.from_config(config), up=ups)
    every = router.table.resolve(destination, sender)
    got = router.candidates(destination, sender, refused=refused)
    # A subsequence of the rule's list, keeping its order: exactly the up, unrefused ones.
    assert list(got) == [r for r in every if r.name not in refused and router.is_up(r.name)]
    assert router.choose(destination, sender, refused=refused) == (got[0] if got else None)


def _config_for_properties() -> Config:
    with tempfile.TemporaryDirectory() as folder:
        return _load(Path(folder), CONFIG)


_CONFIG_FOR_PROPERTIES = _config_for_properties()


RULES = st.lists(
    st.tuples(
        st.from_regex(r"\+?[0-9]{0,4}", fullmatch=True),
        st.sampled_from([None, "Shop", "Alerts"]),
        st.lists(st.sampled_from(["a", "b", "modems"]), min_size=1, max_size=3, unique=True),
    ),
    max_size=8,
)


@given(rules=RULES, destination=st.from_regex(r"\+[0-9]{1,8}", fullmatch=True),
       sender=st.sampled_from([None, "Shop", "Alerts", "Other"]))
def test_the_longest_matching_prefix_wins_then_the_first_in_the_file(
    rules: list[tuple[str, str | None, list[str]]], destination: str, sender: str | None
) -> None:
    config = Config(
        source=Path("smsgate.toml"),
        database=DatabaseConfig(Path("gw.db")),
        smpp=tuple(SmppConfig(n, "127.0.0.1", 2775, "shop", "pw") for n in ("a", "b")),
        modem=(ModemConfig("m1", port="/dev/ttyUSB0"),),
        route=tuple(RouteConfig(p, tuple(via), s) for p, s, via in rules),
    )
    table = RouteTable.from_config(config)
    digits = destination[1:]
    matching = [
        (i, p.lstrip("+"), via) for i, (p, s, via) in enumerate(rules)
        if digits.startswith(p.lstrip("+")) and s in (None, sender)
    ]
    if not matching:
        with pytest.raises(NoRouteError):
            table.resolve(destination, sender)
        return
    longest = max(len(p) for _, p, _ in matching)
    _, _, via = min((m for m in matching if len(m[1]) == longest), key=lambda m: m[0])
    assert names(table.resolve(destination, sender)) == via
