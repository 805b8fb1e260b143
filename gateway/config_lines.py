"""Where each key of a TOML document is written: ``(path) -> line number``.

``tomllib`` reports positions only for syntax errors; a value of the wrong type or an unknown
key comes back as plain Python data. To tell people the line of a bad value we scan the text
ourselves. The scanner only has to understand documents ``tomllib`` already accepted, so it
tracks just what decides the key path of a line: table headers (``[a.b]``), array-of-tables
headers (``[[a]]``, counted per path so ``smpp[1]`` is the second ``[[smpp]]``), dotted keys,
and multi-line strings and arrays whose continuation lines hold no keys (TOML 1.0 §Table,
§Array of Tables, §Keys).

A path is a tuple of table names, array indices and keys, exactly as the loaded data is
indexed: ``("smpp", 1, "window")``. Keys inside inline tables map to the line of the key that
holds the inline table.
"""

from __future__ import annotations

import re

PathPart = str | int
KeyPath = tuple[PathPart, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _split_key(text: str) -> tuple[list[str], str] | None:
    """Parse a (possibly dotted, possibly quoted) key at the start of ``text``.

    Returns the key parts and the rest of the text, or None when ``text`` does not start with a
    key.
    """
    parts: list[str] = []
    rest = text.lstrip()
    while True:
        if rest.startswith('"'):
            m = re.match(r'"((?:[^"\\]|\\.)*)"', rest)
            if m is None:
                return None
            # Escapes in quoted keys are rare in configs; decode the common ones.
            parts.append(m.group(1).replace('\\"', '"').replace("\\\\", "\\"))
        elif rest.startswith("'"):
            m = re.match(r"'([^']*)'", rest)
            if m is None:
                return None
            parts.append(m.group(1))
        else:
            m = _BARE.match(rest)
            if m is None:
                return None
            parts.append(m.group(0))
        rest = rest[m.end():].lstrip()
        if rest.startswith("."):
            rest = rest[1:].lstrip()
            continue
        return parts, rest


def _scan_value(text: str, state: _ValueState) -> None:
    """Advance the open-bracket / open-string state over one line of a value."""
    i = 0
    n = len(text)
    while i < n:
        if state.multiline is not None:
            end = text.find(state.multiline, i)
            if end < 0:
                return
            i = end + 3
            state.multiline = None
            continue
        c = text[i]
        if c == "#":
            return
        if text.startswith('"""', i) or text.startswith("'''", i):
            state.multiline = text[i:i + 3]
            i += 3
            continue
        if c == '"':
            m = re.compile(r'"(?:[^"\\]|\\.)*"').match(text, i)
            i = m.end() if m else n
            continue
        if c == "'":
            end = text.find("'", i + 1)
            i = end + 1 if end >= 0 else n
            continue
        if c in "[{":
            state.depth += 1
        elif c in "]}":
            state.depth -= 1
        i += 1


class _ValueState:
    __slots__ = ("depth", "multiline")

    def __init__(self) -> None:
        self.depth = 0
        self.multiline: str | None = None

    @property
    def open(self) -> bool:
        return self.depth > 0 or self.multiline is not None


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map every table header and key of a valid TOML document to its 1-based line number."""
    found: dict[KeyPath, int] = {}
    array_counts: dict[tuple[str, ...], int] = {}
    # The current table as a path into the data (with array indices) and as a name path
    # (without), because nested arrays of tables are counted per resolved parent.
    current: KeyPath = ()
    state = _ValueState()
    for number, raw in enumerate(text.splitlines(), start=1):
        if state.open:
            _scan_value(raw, state)
            continue
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            parsed = _split_key(line[2:])
            if parsed is None:
                continue
            names, _ = parsed
            current = _resolve(found, array_counts, names, is_array=True)
            found.setdefault(current, number)
            continue
        if line.startswith("["):
            parsed = _split_key(line[1:])
            if parsed is None:
                continue
            names, _ = parsed
            current = _resolve(found, array_counts, names, is_array=False)
            found.setdefault(current, number)
            continue
        parsed = _split_key(line)
        if parsed is None or not parsed[1].startswith("="):
            continue
        names, rest = parsed
        path: KeyPath = current
        for name in names:
            path = (*path, name)
            found.setdefault(path, number)
        _scan_value(rest[1:], state)
    return found


def _resolve(
    found: dict[KeyPath, int],
    array_counts: dict[tuple[str, ...], int],
    names: list[str],
    *,
    is_array: bool,
) -> KeyPath:
    """Turn a header's names into a data path, inserting array indices of enclosing arrays."""
    path: KeyPath = ()
    for depth, name in enumerate(names):
        path = (*path, name)
        last = depth == len(names) - 1
        counted = tuple(str(p) for p in path)
        if last and is_array:
            index = array_counts.get(counted, -1) + 1
            array_counts[counted] = index
            # A new element of an array resets the counts of arrays nested inside it.
            for key in [k for k in array_counts if k[: len(counted)] == counted and k != counted]:
                del array_counts[key]
            return (*path, index)
        if counted in array_counts:
            # `[a.b]` after `[[a]]` refers to the last element of `a`.
            path = (*path, array_counts[counted])
    return path


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int:
    """The line of ``path``, or of its nearest written ancestor; 1 when nothing is written."""
    for end in range(len(path), 0, -1):
        found = lines.get(path[:end])
        if found is not None:
            return found
    return 1
