"""``smsgate config check FILE``: validate a configuration file without starting anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "config", help="check a configuration file", description="Configuration tools."
    )
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION")
    sub.required = True
    check = sub.add_parser(
        "check",
        help="validate FILE and print a summary",
        description=(
            "Load FILE exactly as the daemon would (secrets from the environment variables named "
            "by *_env keys) and print a summary; on an error print the file, line, key and what "
            "was expected, and exit 2."
        ),
    )
    check.add_argument("file", metavar="FILE", type=Path, help="the TOML configuration file")
    check.set_defaults(func=check_command)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def check_command(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"smsgate: invalid configuration: {exc}", file=sys.stderr)
        return 2
    groups = sorted(g for g in config.groups() if g != "modems")
    lines = [
        f"{args.file}: ok",
        f"  database  {config.database.path}",
        f"  {_plural(len(config.smpp), 'smpp bind')}: "
        + (", ".join(f"{s.name} ({s.host}:{s.port}, {s.bind})" for s in config.smpp) or "-"),
        f"  {_plural(len(config.modem), 'modem')}: "
        + (", ".join(m.name for m in config.modem) or "-")
        + (f"; groups: {', '.join(groups)}" if groups else ""),
        f"  {_plural(len(config.route), 'route')}: "
        + ("; ".join(f"{r.prefix or '*'} -> {', '.join(r.via)}" for r in config.route) or "-"),
    ]
    print("\n".join(lines))
    return 0
