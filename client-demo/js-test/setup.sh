#!/bin/sh
# Installs what the browser tests need, on a fresh Debian/Ubuntu machine too:
# Debian's `chromium` package (the e2e test drives /usr/bin/chromium; no
# browser is downloaded) and the npm dev dependencies pinned in
# package-lock.json. Idempotent; `npm test` runs it first.
set -eu
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing Debian's chromium package" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2
fi

npm ci --no-audit --no-fund --loglevel=error >&2
