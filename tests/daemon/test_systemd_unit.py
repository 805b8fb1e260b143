"""systemd/smsgate.service: required settings, the documented exposure level, and that the
daemon's Python runs with writable-executable memory refused (MemoryDenyWriteExecute)."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from gateway.config import DaemonConfig

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "smsgate.service"
README = ROOT / "systemd" / "README.md"

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """systemd.syntax(7), the parts we use: sections, comments, repeated keys accumulate,
    an empty assignment resets the list (as ``CapabilityBoundingSet=`` relies on)."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"line {number}: assignment outside a section"
        assert "=" in line, f"line {number}: not KEY=VALUE: {raw!r}"
        assert not line.endswith("\\"), f"line {number}: continuation lines are not used here"
        key, value = (part.strip() for part in line.split("=", 1))
        values = section.setdefault(key, [])
        if value:
            values.append(value)
        else:
            values.clear()
            values.append("")
    return unit


def seconds(value: str) -> float:
    """A systemd time span like ``30s``, ``2min``, ``1min 30s`` or a bare number of seconds."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(amount) * units[unit]
    return total


def check_required_settings(unit: Unit) -> None:
    service = unit["Service"]

    def one(key: str) -> str:
        assert key in service, f"[Service] {key}= is missing"
        assert len(service[key]) == 1, f"[Service] {key}= is set {len(service[key])} times"
        return service[key][0]

    assert one("Type") == "notify"
    assert one("ExecStart") == "/usr/bin/smsgate run --config /etc/smsgate/smsgate.toml"
    assert one("Restart") == "on-failure"
    assert seconds(one("WatchdogSec")) > 0
    assert one("User") not in ("root", "0", "")
    assert one("User") == "smsgate"
    assert one("StateDirectory") == "smsgate"
    assert one("ProtectSystem") == "strict"
    assert one("ProtectHome") == "yes"
    assert one("PrivateTmp") == "yes"
    assert one("NoNewPrivileges") == "yes"
    assert one("DevicePolicy") == "closed"
    assert set(service["DeviceAllow"]) == {"char-ttyUSB rw", "char-ttyACM rw"}
    assert "dialout" in one("SupplementaryGroups").split()
    assert set(one("RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert one("CapabilityBoundingSet") == ""  # empty: no capability at all
    assert "@system-service" in service["SystemCallFilter"]
    assert one("MemoryDenyWriteExecute") == "yes"
    # systemctl stop must leave the daemon time to drain before SIGKILL.
    assert seconds(one("TimeoutStopSec")) > DaemonConfig().drain_timeout_s + 10
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def documented_level() -> float:
    m = re.search(r"Overall exposure level: \*\*(\d+\.\d+) [A-Z]+\*\*", README.read_text("utf-8"))
    assert m, "systemd/README.md does not state the exposure level"
    return float(m.group(1))


def test_unit_has_the_required_settings() -> None:
    check_required_settings(parse_unit(UNIT.read_text(encoding="utf-8")))


def test_parser_catches_a_missing_setting() -> None:
    text = UNIT.read_text(encoding="utf-8").replace("MemoryDenyWriteExecute=yes\n", "")
    try:
        check_required_settings(parse_unit(text))
    except AssertionError as exc:
        assert "MemoryDenyWriteExecute" in str(exc)
    else:
        raise AssertionError("a unit without MemoryDenyWriteExecute passed the check")


def test_exposure_at_or_below_the_documented_level() -> None:
    check_required_settings(parse_unit(UNIT.read_text(encoding="utf-8")))
    documented = documented_level()
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # the unit was still checked above; CI images carry systemd (Debian: systemd)
    r = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=60,
    )
    m = re.search(r"Overall exposure level for smsgate\.service: (\d+\.\d+)", r.stdout)
    assert m, f"no exposure level in systemd-analyze output:\n{r.stdout}\n{r.stderr}"
    assert float(m.group(1)) <= documented, r.stdout


# The daemon's stack under "no writable+executable memory". systemd's MemoryDenyWriteExecute
# is a seccomp filter refusing mmap/mprotect with PROT_WRITE|PROT_EXEC and adding PROT_EXEC
# later; the kernel's PR_SET_MDWE (Linux >= 6.3) enforces the same rule per process, without
# needing systemd as PID 1. Where the kernel lacks it, the child still proves that no
# writable+executable mapping exists after the same work.
MDWE_CHILD = r"""
import asyncio, ctypes, importlib, mmap, os, pathlib, sqlite3, ssl, sys, tempfile

PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1
libc = ctypes.CDLL(None, use_errno=True)
enforced = libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) == 0
if enforced:
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:
        pass
    else:
        sys.exit("PR_SET_MDWE is set but a W+X mapping was allowed")

for name in sys.argv[1:]:
    importlib.import_module(name)

async def work(folder):
    db = sqlite3.connect(pathlib.Path(folder) / "t.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    db.commit()
    assert db.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    db.close()
    ssl.create_default_context()

    async def echo(reader, writer):
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        assert await reader.read(100) == b"ping"
        writer.close()

with tempfile.TemporaryDirectory() as folder:
    asyncio.run(work(folder))

for line in pathlib.Path("/proc/self/maps").read_text().splitlines():
    perms = line.split()[1]
    if "w" in perms and "x" in perms:
        sys.exit(f"writable+executable mapping: {line}")
print("enforced" if enforced else "checked maps")
"""


def _daemon_modules() -> list[str]:
    modules = []
    for package in ("gateway", "drivers", "segmentation"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__main__.py":
                continue
            modules.append(
                ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            )
    return modules


def test_python_runs_the_daemon_stack_without_writable_executable_memory() -> None:
    r = subprocess.run(
        [sys.executable, "-c", MDWE_CHILD, "smpplib.smpp", "serial", "serial_asyncio_fast",
         "sqlite_utils", "aiomqtt", *_daemon_modules()],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr or r.stdout
    assert r.stdout.strip() in ("enforced", "checked maps")
    if sys.platform == "linux" and _kernel_at_least(6, 3):
        assert r.stdout.strip() == "enforced"


def _kernel_at_least(major: int, minor: int) -> bool:
    m = re.match(r"(\d+)\.(\d+)", platform.release())
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (major, minor)
