#!/usr/bin/env bash
# The one test command: set-up on a fresh machine, lint, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
echo "== ruff"
"$PY" -m ruff check .
echo "== pytest"
"$PY" -m pytest -n 2 -p no:cacheprovider "$@"
