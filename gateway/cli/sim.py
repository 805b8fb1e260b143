"""``smsgate sim smsc|modem ...``: run the simulators that ship with smsgate.

Each simulator contributes one module in ``SIM_MODULES`` with ``register(subparsers)``, the same
shape as the top-level command modules.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

SIM_MODULES: tuple[str, ...] = ("gateway.cli.sim_modem", "gateway.cli.sim_smsc")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "sim",
        help="run the built-in SMSC or modem simulators",
        description="Simulators for tests, benchmarks and the demo: an SMPP SMSC on 127.0.0.1 "
        "and GSM modems on pseudo-terminals, with faults on request.",
    )
    sims = parser.add_subparsers(dest="simulator", metavar="SIMULATOR")
    sims.required = True
    for name in SIM_MODULES:
        importlib.import_module(name).register(sims)
