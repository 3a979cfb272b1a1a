#!/usr/bin/env bash
# What `make test` needs beyond the venv: Debian's chromium for the browser tests
# (Playwright cannot download browsers here). Installs it as root (or through sudo);
# otherwise says exactly what to run and fails, so the suite never half-runs.
set -euo pipefail
CHROMIUM="${WORKBENCH_CHROMIUM:-/usr/bin/chromium}"  # where the browser tests look for it
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo"
  else
    echo "make test needs Debian's chromium for the browser tests; install it with:" >&2
    echo "  sudo apt-get install -y chromium" >&2
    exit 1
  fi
fi
echo "installing chromium for the browser tests (apt-get)..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null
}
[ -x "$CHROMIUM" ] || { echo "chromium did not install at $CHROMIUM" >&2; exit 1; }
