#!/usr/bin/env bash
# Make sure Debian's Chromium is installed and print its path, for the browser tests.
#
#   export CHURNGUARD_TEST_CHROMIUM="$(bash scripts/chromium.sh)"
#
# Installs the `chromium` package with apt-get when it is missing (never a browser downloaded by
# Playwright or any other tool). Safe to run again. Progress goes to stderr; stdout carries only
# the path. Needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail

CHROMIUM="${CHURNGUARD_CHROMIUM_PATH:-/usr/bin/chromium}"

log() { echo "chromium.sh: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ! -x "$CHROMIUM" ]; then
    log "installing Chromium from the Debian packages"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium fonts-dejavu-core >&2
fi
if [ ! -x "$CHROMIUM" ]; then
    log "no Chromium at $CHROMIUM after installing the package"
    exit 1
fi
log "ready: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
echo "$CHROMIUM"
