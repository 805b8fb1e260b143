"""Routing: which ways out a message may take, in failover order, given what is up right now.

Pure: built from the :class:`~gateway.config.Config` (``[[route]]``, ``[[smpp]]``,
``[[modem]]``), told route health by the drivers, asked by the dispatcher.

Rules (DESIGN.md "Config", issue 5 "Dispatch"):

* A rule matches a destination whose digits start with the rule's prefix digits (a leading
  ``+`` is ignored on both sides, so ``"44"`` and ``"+44"`` are the same rule) and, when the
  rule names a ``sender``, a message from exactly that sender. An empty prefix matches all.
* The longest matching prefix wins; between equally long prefixes, the one first in the file.
  A rule with a sender is not preferred over one without: put it first if it should win.
* Only the winning rule's ``via`` is used: its names in order are the failover list. A route
  that is down is skipped; a route that refused this message (a route-level error) is skipped
  for this message, so the next one gets it. With every candidate down or refused the message
  waits (:meth:`Router.choose` returns None); with no rule at all it cannot be sent
  (:class:`NoRouteError`, a permanent, message-level error).
* ``via`` names an SMPP bind, a single modem, or a modem group (every modem is in the group
  ``modems``). A group is up while at least one of its modems is up; the modem pool picks the
  modem inside it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.config import Config
from gateway.errors import SmsgateError


class RouteKind(enum.Enum):
    SMPP = "smpp"
    MODEM = "modem"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class Route:
    """A way out: an SMPP bind, one modem, or a modem group with its member modems."""

    name: str
    kind: RouteKind
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[route]]`` table; ``index`` is its position in the file (ties go to the first)."""

    prefix: str
    via: tuple[str, ...]
    sender: str | None
    index: int

    def matches(self, digits: str, sender: str | None) -> bool:
        if self.sender is not None and sender != self.sender:
            return False
        return digits.startswith(self.prefix)


class NoRouteError(SmsgateError, LookupError):
    """No ``[[route]]`` rule matches this destination (and sender): the message cannot go out."""

    def __init__(self, destination: str, sender: str | None) -> None:
        self.destination = destination
        self.sender = sender
        super().__init__(f"no route for destination {destination!r} (sender {sender!r})")


class UnknownRouteError(SmsgateError, KeyError):
    """A name that is no bind, modem or group (a programming error: config checks names)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)


def _digits(number: str) -> str:
    return number.removeprefix("+")


@dataclass(frozen=True, slots=True)
class RouteTable:
    """The rules in match order and every route they may name."""

    rules: tuple[Rule, ...]
    routes: Mapping[str, Route]

    @classmethod
    def from_config(cls, config: Config) -> RouteTable:
        routes: dict[str, Route] = {}
        for bind in config.smpp:
            routes[bind.name] = Route(bind.name, RouteKind.SMPP)
        for modem in config.modem:
            routes[modem.name] = Route(modem.name, RouteKind.MODEM)
        for group, members in config.groups().items():
            routes[group] = Route(group, RouteKind.GROUP, members)
        rules = [
            Rule(_digits(r.prefix), r.via, r.sender, i) for i, r in enumerate(config.route)
        ]
        for rule in rules:
            for name in rule.via:
                if name not in routes:
                    raise UnknownRouteError(name)
        # Longest prefix first, then file order (sorted() is stable, the key says it anyway).
        rules.sort(key=lambda r: (-len(r.prefix), r.index))
        return cls(tuple(rules), MappingProxyType(routes))

    def rule_for(self, destination: str, sender: str | None = None) -> Rule:
        digits = _digits(destination)
        for rule in self.rules:
            if rule.matches(digits, sender):
                return rule
        raise NoRouteError(destination, sender)

    def resolve(self, destination: str, sender: str | None = None) -> tuple[Route, ...]:
        """Every route the winning rule names, in failover order, whatever their health."""
        return tuple(self.routes[name] for name in self.rule_for(destination, sender).via)


@dataclass(frozen=True, slots=True)
class RouterStatistics:
    routes: int
    up: tuple[str, ...]
    down: tuple[str, ...]


class Router:
    """A :class:`RouteTable` plus the health the drivers report (binds and modems).

    Everything starts down: a bind is up once bound, a modem once registered. Groups have no
    health of their own; a group is up while any member is.
    """

    def __init__(self, table: RouteTable, up: Iterable[str] = ()) -> None:
        self._table = table
        self._up: set[str] = set()
        for name in up:
            self.set_up(name, True)

    @classmethod
    def from_config(cls, config: Config) -> Router:
        return cls(RouteTable.from_config(config))

    @property
    def table(self) -> RouteTable:
        return self._table

    def set_up(self, name: str, up: bool) -> None:
        route = self._table.routes.get(name)
        if route is None:
            raise UnknownRouteError(name)
        if route.kind is RouteKind.GROUP:
            raise ValueError(f"{name!r} is a group: its health follows its modems")
        if up:
            self._up.add(name)
        else:
            self._up.discard(name)

    def is_up(self, name: str) -> bool:
        route = self._table.routes.get(name)
        if route is None:
            raise UnknownRouteError(name)
        if route.kind is RouteKind.GROUP:
            return any(m in self._up for m in route.members)
        return name in self._up

    def candidates(
        self,
        destination: str,
        sender: str | None = None,
        *,
        refused: Iterable[str] = (),
    ) -> tuple[Route, ...]:
        """The routes to try, in order: up, and not among those that refused this message."""
        skip = frozenset(refused)
        return tuple(
            route for route in self._table.resolve(destination, sender)
            if route.name not in skip and self.is_up(route.name)
        )

    def choose(
        self,
        destination: str,
        sender: str | None = None,
        *,
        refused: Iterable[str] = (),
    ) -> Route | None:
        """The route to try now, or None when every candidate is down or refused it."""
        found = self.candidates(destination, sender, refused=refused)
        return found[0] if found else None

    def statistics(self) -> RouterStatistics:
        names = sorted(
            n for n, r in self._table.routes.items() if r.kind is not RouteKind.GROUP
        )
        return RouterStatistics(
            routes=len(self._table.routes),
            up=tuple(n for n in names if n in self._up),
            down=tuple(n for n in names if n not in self._up),
        )
