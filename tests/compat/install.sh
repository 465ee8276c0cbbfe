#!/usr/bin/env bash
# Installs what tests/compat needs: the Python clients (pinned wheels) and kafkajs (from the
# committed package-lock.json). Idempotent; run once per machine (CI's .ci/run calls it).
set -euo pipefail
COMPAT="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --disable-pip-version-check -q -r "$COMPAT/requirements.txt"
npm ci --prefix "$COMPAT/node" --no-audit --no-fund
