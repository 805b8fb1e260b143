"""The ``smsgate`` command: one entry point, one module per command group.

Each module listed in ``COMMAND_MODULES`` defines ``register(subparsers)`` that adds its
sub-command(s) with ``set_defaults(func=handler)``; a handler takes the parsed namespace and
returns the process exit code. Modules import their heavy dependencies inside the handlers so
that ``smsgate --help`` stays fast and never needs Textual or a database.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

COMMAND_MODULES: tuple[str, ...] = (
    "gateway.cli.sim",
    "gateway.cli.config",
    "gateway.cli.encode",
    "gateway.cli.send",
    "gateway.cli.messages",
    "gateway.cli.run",
    "gateway.cli.status",
    "gateway.cli.demo",
    "gateway.cli.subscribers",
    "gateway.cli.segments",
    "gateway.cli.consent",
)

DEFAULT_CONFIG = Path("/etc/smsgate/smsgate.toml")

Handler = Callable[[argparse.Namespace], int]


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` for every command that touches the database or the daemon."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        default=None,
        help="configuration file (default: $SMSGATE_CONFIG, then /etc/smsgate/smsgate.toml)",
    )


def config_path(args: argparse.Namespace) -> Path:
    """Resolve ``--config``: the flag, then ``$SMSGATE_CONFIG``, then the system default."""
    given: Path | None = getattr(args, "config", None)
    if given is not None:
        return given
    env = os.environ.get("SMSGATE_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsgate",
        description="Self-hosted SMS gateway: SMPP carriers, GSM modems, segments and campaigns.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Handler = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `smsgate ... | head` closing the pipe early is not an error worth a traceback.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
