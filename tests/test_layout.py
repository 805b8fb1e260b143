"""Architecture contracts from DESIGN.md, checked on the source so they cannot drift."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import COMMAND_MODULES, build_parser

ROOT = Path(__file__).resolve().parent.parent
OURS = ("gateway", "drivers", "segmentation", "tui")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _package_imports(package: str) -> dict[Path, set[str]]:
    return {p: _imports(p) for p in (ROOT / package).rglob("*.py")}


def test_codec_is_a_leaf() -> None:
    for path, mods in _package_imports("gateway/codec").items():
        ours = {m for m in mods if m.split(".")[0] in OURS}
        bad = {m for m in ours if not m.startswith("gateway.codec")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_drivers_import_only_the_codec_of_the_gateway() -> None:
    for path, mods in _package_imports("drivers").items():
        bad = {
            m for m in mods
            if (m.startswith("gateway") and not m.startswith("gateway.codec"))
            or m.split(".")[0] in ("segmentation", "tui")
        }
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_tui_imports_neither_drivers_nor_daemon_internals() -> None:
    for path, mods in _package_imports("tui").items():
        bad = {m for m in mods if m.split(".")[0] == "drivers"}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("package", ["gateway", "drivers", "segmentation"])
def test_core_packages_import_without_textual(package: str) -> None:
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / package).rglob("*.py")
        if p.name != "__main__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')]\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr or "textual was imported"


def test_smsgate_help_runs() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert "usage: smsgate" in r.stdout


def _commands() -> list[str]:
    parser = build_parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        return sorted(action.choices)  # type: ignore[attr-defined]
    return []


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = _commands()
    assert len(commands) >= len(COMMAND_MODULES)
    for name in commands:
        r = subprocess.run(
            [sys.executable, "-m", "gateway.cli", name, "--help"],
            cwd=ROOT, capture_output=True, text=True,
        )
        assert r.returncode == 0, f"smsgate {name} --help failed: {r.stderr}"
        assert f"smsgate {name}" in readme, f"README does not mention `smsgate {name}`"


def test_readme_first_commands_are_the_setup_scripts() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in readme.split("```") if b.strip().startswith("bash scripts/")]
    first = [line.strip() for b in blocks[:1] for line in b.strip().splitlines()]
    assert first[:2] == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    for line in first[:2]:
        assert (ROOT / line.split()[1]).is_file()
