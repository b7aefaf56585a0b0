#!/usr/bin/env bash
# scripts/apt-install.sh PACKAGE: install one Debian package (no recommends) for a make target.
# When the first try fails (package lists missing or stale), runs `apt-get update` and tries once more.
# apt's output goes to a temporary log that is removed when the install succeeds and kept, and named
# on stderr, when it fails. Exit status 0 when the package is installed, 1 otherwise.
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: $0 PACKAGE" >&2; exit 2; }
pkg="$1"
log="$(mktemp "${TMPDIR:-/tmp}/apt-$pkg.XXXXXX.log")" || exit 1
apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg")
if "${apt[@]}" >"$log" 2>&1; then
  rm -f "$log"; exit 0
fi
echo "apt-get install $pkg failed; running apt-get update and retrying" >&2
apt-get update -q >>"$log" 2>&1
if "${apt[@]}" >>"$log" 2>&1; then
  rm -f "$log"; exit 0
fi
echo "apt-get install $pkg failed (its output: $log)" >&2
exit 1
