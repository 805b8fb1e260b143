#!/usr/bin/env bash
# Create .venv (if missing) and install smsgate with its test tools.
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "smsgate needs Python >= 3.11 (found: $("$PY" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.smsgate-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setting up .venv (pip install -e '.[test]') ..." >&2
    # pip's chatter goes to a log; shown only when the install fails.
    if ! { .venv/bin/python -m pip install --upgrade pip \
           && .venv/bin/python -m pip install -e ".[test]"; } > .venv/pip.log 2>&1; then
        tail -n 40 .venv/pip.log >&2
        echo "pip install failed; full log in .venv/pip.log" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
