"""Logging: bodies only at debug, secrets never, one line per record."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import LogLevel, load_config
from gateway.logging_setup import (
    BODY,
    REDACTED,
    Redactor,
    secrets_of,
    setup_from_config,
    setup_logging,
)

PASSWORD = "hunter2-carrier-pw"
BODY_TEXT = "Your code is 493021, do not share it"


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    # A logger of our own, so the test never touches pytest's root handlers.
    lg = logging.getLogger("smsgate-test")
    lg.propagate = False
    before = list(lg.handlers)
    yield lg
    for h in lg.handlers[:]:
        if h not in before:
            lg.removeHandler(h)
    lg.propagate = True


def _setup(logger: logging.Logger, level: LogLevel) -> io.StringIO:
    out = io.StringIO()
    setup_logging(level, secrets=[PASSWORD], stream=out, environ={"JOURNAL_STREAM": "8:1"},
                  logger=logger)
    return out


def _log_everything(log: logging.Logger) -> None:
    log.debug("submitting to %s", "+447700900123", extra={BODY: BODY_TEXT})
    log.info("message 17 submitted", extra={BODY: BODY_TEXT})
    log.info("bind carrier-a password=%s system_id=shop", PASSWORD)
    log.warning("retrying with %r", {"password": PASSWORD})
    try:
        raise RuntimeError(f"bind refused for password {PASSWORD}")
    except RuntimeError:
        log.exception("bind failed")


def test_info_handler_never_sees_a_body_or_a_password(logger: logging.Logger) -> None:
    out = _setup(logger, "info")
    _log_everything(logger.getChild("outbox"))
    text = out.getvalue()
    assert "message 17 submitted" in text
    assert "bind failed" in text and "RuntimeError" in text
    assert BODY_TEXT not in text
    assert "493021" not in text
    assert PASSWORD not in text
    assert text.count(REDACTED) == 3  # the argument, the repr, the traceback
    assert "submitting" not in text  # debug lines are below the level


def test_debug_shows_bodies_on_debug_records_only_and_still_no_secrets(
    logger: logging.Logger,
) -> None:
    out = _setup(logger, "debug")
    _log_everything(logger)
    lines = out.getvalue().splitlines()
    debug = [line for line in lines if line.startswith("DEBUG")]
    info = [line for line in lines if line.startswith("INFO")]
    assert debug == [f"DEBUG smsgate-test: submitting to +447700900123 body={BODY_TEXT!r}"]
    assert all(BODY_TEXT not in line for line in info)
    assert PASSWORD not in out.getvalue()


def test_one_line_per_record(logger: logging.Logger) -> None:
    out = _setup(logger, "debug")
    logger.info("MO text was %s", "hi\nINFO forged: line\r")
    logger.debug("MO", extra={BODY: "two\nlines"})
    assert out.getvalue().splitlines() == [
        "INFO smsgate-test: MO text was hi\\nINFO forged: line\\r",
        "DEBUG smsgate-test: MO body='two\\\\nlines'",
    ]


def test_timestamps_unless_under_journald(logger: logging.Logger) -> None:
    out = io.StringIO()
    setup_logging("info", stream=out, environ={}, logger=logger)
    logger.info("x")
    assert not out.getvalue().startswith("INFO")  # an asctime comes first
    out = io.StringIO()
    setup_logging("info", stream=out, environ={"JOURNAL_STREAM": "8:123"}, logger=logger)
    logger.info("x")
    assert out.getvalue() == "INFO smsgate-test: x\n"


def test_setup_again_replaces_only_its_own_handler(logger: logging.Logger) -> None:
    theirs = logging.NullHandler()
    logger.addHandler(theirs)
    first = setup_logging("info", stream=io.StringIO(), logger=logger)
    second = setup_logging("warning", stream=io.StringIO(), logger=logger)
    assert first not in logger.handlers
    assert second in logger.handlers
    assert theirs in logger.handlers
    assert logger.level == logging.WARNING


def test_secrets_and_level_come_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "smsgate.toml"
    path.write_text(
        '[database]\npath = "gw.db"\n'
        '[[smpp]]\nname = "a"\nhost = "127.0.0.1"\nsystem_id = "shop"\npassword_env = "PW"\n'
        '[[modem]]\nname = "m1"\nport = "/dev/ttyUSB0"\npin = "4711"\n'
        '[segments]\nhash_key = "k3y-k3y-k3y-k3y"\n'
        '[logging]\nlevel = "warning"\n',
        encoding="utf-8",
    )
    config = load_config(path, environ={"PW": PASSWORD})
    assert set(secrets_of(config)) == {PASSWORD, "4711", "k3y-k3y-k3y-k3y"}
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    out = io.StringIO()
    handler = setup_from_config(config, stream=out)
    try:
        assert root.level == logging.WARNING
        logging.getLogger("gateway.test").warning("pin %s key %s pw %s", "4711",
                                                  "k3y-k3y-k3y-k3y", PASSWORD)
        assert out.getvalue().endswith("pin *** key *** pw ***\n")
    finally:
        root.removeHandler(handler)
        root.setLevel(before[0])
    assert root.handlers == before[1]


def test_redactor_handles_overlaps_and_longest_first() -> None:
    redact = Redactor(["abc", "abcdef", ""])
    assert redact("x abcdef abc y") == "x *** *** y"
    # A replacement that joins into a new occurrence is caught.
    redact = Redactor(["*aaa"])
    assert "*aaa" not in redact("*aaaaaa")


SECRET = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=4,
                 max_size=12)


@settings(max_examples=200)
@given(secret=SECRET, before=st.text(max_size=10), after=st.text(max_size=10))
def test_a_secret_never_survives_redaction(secret: str, before: str, after: str) -> None:
    assert secret not in Redactor([secret])(before + secret + after)


@settings(max_examples=100)
@given(secret=SECRET, body=st.text(min_size=1, max_size=30))
def test_info_output_holds_no_body_and_no_secret(secret: str, body: str) -> None:
    log = logging.getLogger("smsgate-prop")
    log.propagate = False
    out = io.StringIO()
    handler = setup_logging("info", secrets=[secret], stream=out, environ={}, logger=log)
    try:
        marked = f"BODY<{body}>"
        log.info("sent %s", secret, extra={BODY: marked})
        log.debug("sent", extra={BODY: marked})
        text = out.getvalue()
        assert marked not in text
        assert secret not in text
    finally:
        log.removeHandler(handler)
