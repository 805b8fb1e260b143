#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run them.
# Extra arguments go to pytest (e.g. -m 'not slow', -k codec).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected no test: treat that as a failure too, loudly.
if [ "$rc" -eq 5 ]; then
    echo "no tests were collected" >&2
fi
exit "$rc"
