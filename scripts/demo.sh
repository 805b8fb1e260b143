#!/usr/bin/env bash
# Set up on a fresh machine and run the main job: the headless demo (SMSC simulator, two
# simulated modems, the daemon, a mixed batch, a summary).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/smsgate demo --headless
