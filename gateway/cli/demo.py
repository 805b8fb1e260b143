"""``smsgate demo [--headless]``: simulators, daemon and a mixed batch, then a summary."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run the appliance on simulators and send a mixed batch",
        description="No hardware, no configuration: starts the SMSC simulator and two simulated "
        "modems (separate processes), the daemon on a temporary database, sends a mixed batch "
        "through both routes with a progress bar and prints a summary. Without the terminal UI "
        "(not built yet) plain `smsgate demo` runs the headless demo too.",
    )
    parser.add_argument("--headless", action="store_true",
                        help="no terminal UI: progress and summary as plain text")
    parser.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    from gateway.demo import main

    if not args.headless:
        print("smsgate demo: the terminal UI is not built yet; running the headless demo.",
              file=sys.stderr)
    return main()
