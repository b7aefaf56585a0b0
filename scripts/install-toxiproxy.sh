#!/usr/bin/env bash
# Build the real Toxiproxy server (and CLI) v2.12.0 from the Go module proxy into ./bin
# (or $SIMSTACK_BIN_DIR: `simstack install-toxiproxy` ships this script and sets it).
# Idempotent: does nothing when the toxiproxy-server there already reports the wanted version.
set -euo pipefail
VERSION="${TOXIPROXY_VERSION:-v2.12.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SIMSTACK_BIN_DIR:-$ROOT/bin}"
mkdir -p "$BIN"
if [ -x "$BIN/toxiproxy-server" ] && "$BIN/toxiproxy-server" -version 2>/dev/null | grep -q "${VERSION#v}"; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install-toxiproxy: Go is not installed; install Go >= 1.23 (e.g. apt-get install golang) or put toxiproxy-server ${VERSION} on PATH" >&2
  exit 1
fi
echo "==> building Toxiproxy ${VERSION} with go install (static, CGO disabled)"
GOBIN_TMP="$(mktemp -d)"
trap 'rm -rf "$GOBIN_TMP"' EXIT
CGO_ENABLED=0 GOBIN="$GOBIN_TMP" GOFLAGS=-buildvcs=false \
  go install -ldflags "-X github.com/Shopify/toxiproxy/v2.Version=${VERSION#v}" "github.com/Shopify/toxiproxy/v2/cmd/server@${VERSION}" "github.com/Shopify/toxiproxy/v2/cmd/cli@${VERSION}"
mv "$GOBIN_TMP/server" "$BIN/toxiproxy-server"
mv "$GOBIN_TMP/cli" "$BIN/toxiproxy-cli"
"$BIN/toxiproxy-server" -version
