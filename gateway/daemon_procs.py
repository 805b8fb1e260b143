"""Child processes for the demo, the tests and the benchmark: simulators and the daemon itself.

:class:`SimProcess` starts ``python -m gateway.daemon_simhost`` (a simulator in its own process,
on real sockets or ptys) and talks to it over JSON lines; :func:`write_config` writes a
configuration file for a daemon that uses those simulators. Every child is started with
``sys.executable`` from the repository root, never a command on PATH, and is ended by its own
``close()`` (terminate, then kill after a bound), never by name.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class SimProcessError(RuntimeError):
    pass


class SimProcess:
    """One simulator process; ``info`` is its ready line (``port`` or ``path``)."""

    def __init__(self, kind: str, options: dict[str, Any] | None = None, *,
                 start_timeout: float = 15.0) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.daemon_simhost", kind, json.dumps(options or {})],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.info: dict[str, Any] = self._read(start_timeout)
        if not self.info.get("ready"):
            self.close()
            raise SimProcessError(f"{kind} simulator did not start: {self.info}")

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def path(self) -> str:
        return str(self.info["path"])

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise SimProcessError(f"{self.kind} simulator did not answer in {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise SimProcessError(f"{self.kind} simulator exited ({self.proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def command(self, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        reply = self._read(timeout)
        if "error" in reply:
            raise SimProcessError(reply["error"])
        return reply

    def close(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def write_config(
    folder: Path, *, smsc_port: int | None = None, modem_paths: tuple[str, ...] = (),
    routes: tuple[tuple[str, tuple[str, ...]], ...] | None = None, window: int = 64,
    extra: str = "", smpp_extra: str = "", modem_rate_per_minute: float = 600.0,
) -> Path:
    """A daemon configuration for simulators on 127.0.0.1; returns its path."""
    lines = ["[database]", f'path = "{folder / "smsgate.db"}"', ""]
    if smsc_port is not None:
        lines += ["[[smpp]]", 'name = "sim-smsc"', 'host = "127.0.0.1"', f"port = {smsc_port}",
                  'system_id = "demo"', 'password = "demo"', f"window = {window}",
                  'id_format = "hex"', "enquire_link_s = 5", "response_timeout_s = 5",
                  smpp_extra, ""]
    for i, device in enumerate(modem_paths, 1):
        lines += ["[[modem]]", f'name = "sim-modem-{i}"', f'port = "{device}"',
                  f"rate_per_minute = {modem_rate_per_minute}", ""]
    if routes is None:
        via = (["sim-smsc"] if smsc_port is not None else []) + (
            ["modems"] if modem_paths else [])
        routes = (("+", tuple(via)),)
    for prefix, names in routes:
        lines += ["[[route]]", f'prefix = "{prefix}"',
                  "via = [" + ", ".join(f'"{n}"' for n in names) + "]", ""]
    lines.append(extra)
    path = folder / "smsgate.toml"
    path.write_text("\n".join(lines))
    return path
