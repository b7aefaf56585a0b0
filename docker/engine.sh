#!/usr/bin/env bash
# Provision the Docker engine that simstack's docker mode runs on.
#
#   docker/engine.sh [ensure]   reuse a running engine, or install docker.io and start dockerd
#   docker/engine.sh status     exit 0 when an engine answers, 1 otherwise
#   docker/engine.sh stop       stop the dockerd this script started (never another one)
#
# Meant for these machines and CI (`make engine`, `make test`): it installs packages and starts a
# daemon, so `simstack up` never calls it. Without an engine, `--mode local` still works.
#
# Env: SIMSTACK_ENGINE_TIMEOUT  seconds to wait for a started dockerd to answer (default 30)
#      SIMSTACK_DOCKERD_LOG     dockerd's log file (default /var/log/simstack-dockerd.log)
set -euo pipefail

TIMEOUT="${SIMSTACK_ENGINE_TIMEOUT:-30}"
LOG="${SIMSTACK_DOCKERD_LOG:-/var/log/simstack-dockerd.log}"
PIDFILE=/var/run/simstack-dockerd.pid
FALLBACK="docker-mode is unavailable; --mode local (same stand-ins and Toxiproxy as processes) still works"

say() { echo "engine: $*" >&2; }
answers() { command -v docker >/dev/null 2>&1 && timeout 5 docker info >/dev/null 2>&1; }

install_engine() {
  if [ "$(id -u)" != 0 ]; then
    say "no Docker engine answers and installing one needs root (you are $(id -un)); $FALLBACK"
    return 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    say "no Docker engine answers and apt-get is missing, so docker.io cannot be installed; $FALLBACK"
    return 1
  fi
  say "installing docker.io with apt-get"
  if ! "$(dirname "${BASH_SOURCE[0]}")/../scripts/apt-install.sh" docker.io; then
    say "docker.io could not be installed; $FALLBACK"
    return 1
  fi
}

ensure() {
  if answers; then
    exit 0
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    install_engine || exit 1
  fi
  # A killed dockerd whose parent is gone can linger as a zombie: that one is not running.
  if ps -C dockerd -o stat= 2>/dev/null | grep -qv '^Z'; then
    # Never start a second dockerd: it would fight the first over docker0 and the socket.
    say "a dockerd process exists but does not answer yet; waiting for it"
  else
    if [ "$(id -u)" != 0 ]; then
      say "dockerd is installed but not running, and starting it needs root; $FALLBACK"
      exit 1
    fi
    say "starting dockerd (log: $LOG)"
    # --ip: ports published without an address bind to loopback, not every interface.
    # --userland-proxy=false: published ports are plain NAT, so a TCP reset or a refused
    # connection from Toxiproxy reaches the client as it does in local mode (docker-proxy
    # would accept every connection itself and turn both into accept-then-close).
    setsid nohup dockerd --log-level=warn --ip=127.0.0.1 --userland-proxy=false >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
  fi
  local deadline=$((SECONDS + TIMEOUT))
  until answers; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "dockerd did not answer within ${TIMEOUT}s; last log lines:"
      tail -n 15 "$LOG" >&2 2>/dev/null || true
      say "$FALLBACK"
      exit 1
    fi
    sleep 0.1
  done
  say "ready: $(docker version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}')"
}

status() {
  if answers; then
    docker version --format 'engine {{.Server.Version}} (API {{.Server.APIVersion}}) answers'
  else
    echo "no Docker engine answers"
    exit 1
  fi
}

stop() {
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "engine: no dockerd started by this script is running"
    rm -f "$PIDFILE"
    return 0
  fi
  kill "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; echo "engine: stopped dockerd $pid"; return 0; }
    sleep 0.1
  done
  say "dockerd $pid did not stop within 10s"
  exit 1
}

case "${1:-ensure}" in
  ensure) ensure ;;
  status) status ;;
  stop) stop ;;
  *) echo "usage: $0 [ensure|status|stop]" >&2; exit 2 ;;
esac
