#!/bin/sh
# Installs what the browser tests need, on a fresh Debian/Ubuntu machine too:
# Debian's `chromium` package (the e2e test drives /usr/bin/chromium; no
# browser is downloaded) and the npm dev dependencies pinned in
# package-lock.json. Idempotent; `npm test` runs it first.
set -eu
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  sh ../.ci/apt-install chromium
fi

npm ci --no-audit --no-fund --loglevel=error >&2
