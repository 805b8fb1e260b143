"""``smsgate run --config FILE``: the gateway daemon (what systemd starts)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.cli import add_config_argument, config_path


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run the gateway daemon",
        description="Run the daemon: send queued messages through the configured SMPP binds and "
        "modems, match delivery reports, handle STOP/HELP/START. SIGTERM drains in-flight "
        "messages, unbinds and exits 0. A bad configuration stops start-up with the file, "
        "line and key (exit 2).",
    )
    add_config_argument(parser)
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.config import ConfigError, load_config
    from gateway.daemon import Daemon
    from gateway.logging_setup import setup_from_config
    from gateway.routing import UnknownRouteError

    path = config_path(args)
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"smsgate run: invalid configuration: {exc}", file=sys.stderr)
        return 2
    setup_from_config(config)
    try:
        return asyncio.run(Daemon(config).run())
    except (UnknownRouteError, ValueError) as exc:
        print(f"smsgate run: cannot start: {exc}", file=sys.stderr)
        return 2
