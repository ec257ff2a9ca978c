#!/usr/bin/env bash
# The one demo command: set-up on a fresh machine, then a shop's day end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m demo.main "$@"
