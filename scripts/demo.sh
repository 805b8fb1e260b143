#!/usr/bin/env bash
# Set up on a fresh machine and run the main job. Until the daemon demo lands this shows the
# codec at work on a long mixed message: how it is encoded, split and what it costs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/smsgate encode --to +447700900123 \
    "Hi Zoë! Your order #1234 ships today. Track it at https://shop.example/t/abc?x=1 — reply STOP to opt out. Thank you for shopping with us, see you soon at the €5 off sale {members only} ✨"
