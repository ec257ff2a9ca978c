#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine: Mosquitto, PostgreSQL,
# Chromium and the
# Python package with its test extras. Safe to run again; it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT=()
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  APT+=(mosquitto)
fi
# The tests start their own PostgreSQL server from Debian's binaries (initdb, postgres).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  APT+=(postgresql)
fi
if [ ${#APT[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "== installing ${APT[*]} (Debian packages)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT[@]}" >/dev/null
fi

# systemd-analyze checks the units in deploy/systemd (offline: no running systemd needed).
if ! command -v systemd-analyze >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "== installing systemd (Debian package, for systemd-analyze verify)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

# The panel's browser tests drive Debian's headless Chromium (never a downloaded browser).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "== installing chromium and chromium-driver (Debian packages)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

PY=${PYTHON:-python3}
echo "== installing the Python package and its test extras"
"$PY" -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v -e '^WARNING: Running pip as' -e 'is ignored: it is neither' || true
