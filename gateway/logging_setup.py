"""Logging for the daemon: one set-up call, no message bodies or secrets above debug.

Rules the rest of the code follows (issue 5, "Logs"):

* A message body is never put in the log message itself. It travels in the record's
  ``extra={"body": text}`` (:data:`BODY`), and :class:`SafeFormatter` prints it only on
  DEBUG records; on any other level it is dropped.
* Known secret values (bind passwords, SIM PINs, the suppression hash key: see
  :func:`secrets_of`) are replaced by ``***`` wherever they appear in the finished line,
  arguments and tracebacks included, at every level.
* One record is one line: newlines in the message (an MO text quoted at debug, a carrier's
  error string) are escaped so nobody can forge log lines; tracebacks stay multi-line.
* Under systemd (``$JOURNAL_STREAM`` set) lines carry no timestamp: journald adds its own.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Final, TextIO

from gateway.config import Config, LogLevel

BODY: Final = "body"
"""The ``extra`` key that carries a message body; printed on DEBUG records only."""

REDACTED: Final = "***"
_WITHHELD: Final = "[log line withheld: it still contained a secret after redaction]"

LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def secrets_of(config: Config) -> tuple[str, ...]:
    """Every secret value the configuration holds."""
    found = [s.password for s in config.smpp]
    found += [m.pin for m in config.modem if m.pin]
    if config.segments.hash_key:
        found.append(config.segments.hash_key)
    return tuple(s for s in found if s)


class Redactor:
    """Replaces known secret values in text, longest first (so a secret containing another
    secret is replaced whole)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        if not self._secrets:
            return text
        # A replacement can join with its neighbours into a new occurrence ("*ab" + "ab"...):
        # repeat a bounded number of times, and withhold the line if one still survives.
        for _ in range(len(self._secrets) * 4):
            if not any(s in text for s in self._secrets):
                return text
            for secret in self._secrets:
                text = text.replace(secret, REDACTED)
        return text if not any(s in text for s in self._secrets) else _WITHHELD


class SafeFormatter(logging.Formatter):
    """Formats one line per record, with bodies at debug only and secrets redacted."""

    def __init__(self, redactor: Redactor, *, timestamps: bool) -> None:
        fmt = "%(levelname)s %(name)s: %(message)s"
        super().__init__(f"%(asctime)s {fmt}" if timestamps else fmt)
        self._redact = redactor

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        line = line.replace("\r", "\\r").replace("\n", "\\n")
        body = record.__dict__.get(BODY)
        if body is not None and record.levelno <= logging.DEBUG:
            escaped = str(body).replace("\r", "\\r").replace("\n", "\\n")
            line = f"{line} body={escaped!r}"
        return line

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


_HANDLER_NAME: Final = "smsgate"


def setup_logging(
    level: LogLevel | int,
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    logger: logging.Logger | None = None,
) -> logging.Handler:
    """Install our handler on ``logger`` (default: the root logger) and set its level.

    Calling it again replaces the handler it installed before (not anyone else's).
    """
    target = logging.getLogger() if logger is None else logger
    numeric = LEVELS[level] if isinstance(level, str) else level
    env = os.environ if environ is None else environ
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        SafeFormatter(Redactor(secrets), timestamps="JOURNAL_STREAM" not in env)
    )
    for old in [h for h in target.handlers if h.get_name() == _HANDLER_NAME]:
        target.removeHandler(old)
        old.close()
    target.addHandler(handler)
    target.setLevel(numeric)
    return handler


def setup_from_config(config: Config, *, stream: TextIO | None = None) -> logging.Handler:
    """The daemon's call: level from ``[logging] level``, secrets from the whole config."""
    return setup_logging(config.logging.level, secrets=secrets_of(config), stream=stream)
