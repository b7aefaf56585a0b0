#!/usr/bin/env bash
# Install Debian's chromium for the HTML report's browser tests (driven by Playwright for Python with
# executable_path, since Playwright's own browser download is not available everywhere).
# Idempotent: does nothing when chromium is on PATH. Where it cannot be installed (not root, no apt-get,
# no package), it says so and exits 0: the browser tests then skip with the reason.
set -uo pipefail
say() { echo "browser: $*" >&2; }
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SKIP="the HTML report's browser tests will be skipped"
if ! command -v apt-get >/dev/null 2>&1; then
  say "chromium is not installed and apt-get is missing; $SKIP"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
  say "chromium is not installed and installing it needs root (you are $(id -un)); $SKIP"; exit 0
fi
say "installing chromium with apt-get"
if ! "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" chromium; then
  say "chromium could not be installed; $SKIP"; exit 0
fi
chromium --version 2>/dev/null | head -1 >&2 || true
