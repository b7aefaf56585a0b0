#!/usr/bin/env bash
# Build docker mode's images offline: no container registry is needed (none is reachable here).
#
#   1. Python base  ($SIMSTACK_BASE_IMAGE, default simstack/python-base:3.11): Debian's python3.11 .debs
#      unpacked with dpkg-deb, ldconfig'd, stdlib precompiled in a chroot, then `docker import`.
#      Set SIMSTACK_BASE_IMAGE=python:3.11-slim to build on the official image instead (it must be
#      present locally or pullable); only the default name is ever built here.
#   2. Stand-ins    ($SIMSTACK_STANDINS_IMAGE, default simstack/standins:<version>): wheels of the
#      runtime deps (pyproject's dependencies minus docker/testcontainers, pinned to the versions in
#      .venv) downloaded on the host, installed with `pip install --target`, plus simstack/ and fakes/ (as simstack/fakes);
#      built with `DOCKER_BUILDKIT=0 docker build --network=none`. One image runs api and auth.
#   3. Toxiproxy    ($SIMSTACK_TOXIPROXY_IMAGE, default ghcr.io/shopify/toxiproxy:2.12.0): FROM scratch
#      around bin/toxiproxy-server (scripts/install-toxiproxy.sh builds it), like the official image.
#
# The names and their defaults live in simstack/images.py (one source of truth with the launcher).
# Each image carries a `simstack.inputs` label, the hash of what it was built from; an image whose
# label matches is skipped, and one without the label (pulled or built elsewhere) is never replaced.
# Scratch space: docker/.build/ (gitignored). Env: PYTHON (default .venv/bin/python).
set -euo pipefail
export DOCKER_BUILDKIT=0  # no buildx on these machines: classic builder

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$ROOT/docker/.build"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
mkdir -p "$BUILD"
exec 9>"$BUILD/.lock"
flock 9  # two builds at once would fight over docker/.build

T0=$(date +%s.%N)
STEP=0
step() { STEP=$((STEP + 1)); printf '==> [%d/3] %s\n' "$STEP" "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'build-images: %s\n' "$*" >&2; exit 1; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }
sha() { sha256sum | cut -c1-32; }

[ -x "$PY" ] || die "no Python at $PY; run \`make setup\` first (or set PYTHON)"
docker info >/dev/null 2>&1 || die "no Docker engine answers; run \`make engine\` (docker mode is optional: --mode local works without it)"
eval "$(cd "$ROOT" && "$PY" -m simstack.images)"

# The label of an image: "-" when the image is missing, "" when it exists without the label.
label_of() {
  docker image inspect -f "{{index .Config.Labels \"$INPUTS_LABEL\"}}" "$1" 2>/dev/null || echo "-"
}

# up_to_date IMAGE HASH: true when IMAGE needs no build (same inputs, or not ours to replace).
up_to_date() {
  local have
  have="$(label_of "$1")"
  if [ "$have" = "$2" ]; then note "up to date"; return 0; fi
  if [ -z "$have" ]; then note "$1 exists and was not built by simstack: using it as it is"; return 0; fi
  return 1
}

# ---------------------------------------------------------------------------------------------
# 1. Python base image from Debian packages

BASE_ROOTS="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib busybox-static"
# Dependencies a Python runtime never uses (package tooling and perl); skipped with their own deps.
BASE_SKIP='^(dpkg|install-info|tar|perl|perl-base|perl-modules-.*|libperl.*|mailcap|mime-support|debconf.*)$'

# Print "package=version" for the runtime closure of BASE_ROOTS (Depends/Pre-Depends, first alternative).
base_closure() {
  local seen="" level="$BASE_ROOTS" next
  while [ -n "$level" ]; do
    seen="$seen $level"
    # shellcheck disable=SC2086
    next="$(apt-cache depends --important $level 2>/dev/null | awk '
      /^[^ ]/ { alt = 0; next }
      { dep = $2; if (dep ~ /^</) next
        if (alt) { alt = ($1 ~ /^\|/); next }   # later alternatives of an "A | B" dependency
        alt = ($1 ~ /^\|/); print dep }' | sort -u | grep -Ev "$BASE_SKIP" || true)"
    level=""
    for p in $next; do
      case " $seen " in *" $p "*) ;; *) level="$level $p" ;; esac
    done
    level="${level# }"
  done
  # shellcheck disable=SC2086
  apt-cache show --no-all-versions $seen | awk '/^Package:/ { p = $2 } /^Version:/ { print p "=" $2 }' | sort
}

build_base() {
  local rootfs="$BUILD/base-rootfs" debs="$BUILD/debs"
  rm -rf "$rootfs" "$debs"
  mkdir -p "$rootfs" "$debs"
  # shellcheck disable=SC2086
  (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root $PKGS >/dev/null) || die "apt-get download failed for: $PKGS"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$rootfs"; done
  rm -rf "$rootfs"/usr/share/{doc,man,info,locale,lintian,bug} "$rootfs"/usr/lib/python3.11/test
  ln -sf busybox "$rootfs/bin/sh"
  ln -sf python3.11 "$rootfs/usr/bin/python3"
  mkdir -p "$rootfs/tmp" "$rootfs/etc" "$rootfs/root"
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  ldconfig -r "$rootfs"
  # Without .pyc files a container's first import of the stdlib takes about twice as long.
  chroot "$rootfs" /usr/bin/python3 -m compileall -q /usr/lib/python3.11 >/dev/null \
    || die "the unpacked Python does not run in a chroot (see above)"
  chroot "$rootfs" /usr/bin/python3 -c 'import asyncio, ctypes, hashlib, json, lzma, bz2, sqlite3, ssl, uuid, zlib' \
    || die "the unpacked Python misses a library (see above)"
  tar -C "$rootfs" -c . | docker import \
    --change "LABEL $INPUTS_LABEL=$1" \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    -m "simstack python base from Debian packages" - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

t=$(date +%s.%N)
step "Python base $BASE_IMAGE"
if [ "$BASE_IMAGE" != "$DEFAULT_BASE_IMAGE" ]; then
  if [ "$(label_of "$BASE_IMAGE")" = "-" ]; then
    note "not present locally: pulling (needs a registry)"
    docker pull -q "$BASE_IMAGE" >/dev/null || die "cannot pull $BASE_IMAGE; unset SIMSTACK_BASE_IMAGE to build simstack's own base offline"
  fi
  note "using $BASE_IMAGE (SIMSTACK_BASE_IMAGE)"
else
  command -v apt-get >/dev/null || die "building the base image needs apt-get (Debian); or set SIMSTACK_BASE_IMAGE=python:3.11-slim"
  [ "$(id -u)" = 0 ] || die "building the base image needs root (chroot); or set SIMSTACK_BASE_IMAGE=python:3.11-slim"
  # Resolving the closure costs ~3 s of apt-cache; reuse it while apt's package lists are unchanged.
  APT_KEY="$( { ls -l --time-style=+%s /var/lib/apt/lists/ 2>/dev/null; echo "$BASE_ROOTS $BASE_SKIP"; declare -f base_closure; } | sha)"
  if [ "$(head -1 "$BUILD/base-closure" 2>/dev/null)" = "$APT_KEY" ]; then
    CLOSURE="$(tail -n +2 "$BUILD/base-closure")"
  else
    apt-cache show python3.11-minimal >/dev/null 2>&1 || { note "apt lists are empty: apt-get update"; apt-get update -q >/dev/null; }
    CLOSURE="$(base_closure)"
    { echo "$APT_KEY"; echo "$CLOSURE"; } >"$BUILD/base-closure"
  fi
  PKGS="$(echo "$CLOSURE" | cut -d= -f1 | tr '\n' ' ')"
  H="$( { echo "$CLOSURE"; declare -f build_base; } | sha)"
  if ! up_to_date "$BASE_IMAGE" "$H"; then
    note "building from $(echo "$CLOSURE" | wc -l) Debian packages"
    build_base "$H"
    note "built: $(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{ printf "%d MB", $1 / 1e6 }')"
  fi
fi
note "($(since "$t"))"

# ---------------------------------------------------------------------------------------------
# 2. Stand-ins image

# Print the requirement lines (pyproject runtime deps minus the docker libraries), then, after a
# "---" line, constraints pinning every distribution installed in the venv.
standins_requirements() {
  "$PY" - "$ROOT/pyproject.toml" <<'EOF'
import re, sys, tomllib
from importlib import metadata
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
host_only = {"docker", "testcontainers"}  # the launcher's libraries, not the stand-ins'
for dep in deps:
    if re.split(r"[\s<>=!~\[;]", dep, maxsplit=1)[0].lower() not in host_only:
        print(dep)
print("---")
pins = {d.metadata["Name"].lower(): d.version for d in metadata.distributions()}
pins.pop("simstack", None)
for name in sorted(pins):
    print(f"{name}=={pins[name]}")
EOF
}

build_standins() {
  local ctx="$BUILD/standins" wheels="$BUILD/wheels"
  local target=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311
                --platform manylinux2014_x86_64 --platform manylinux_2_36_x86_64)
  rm -rf "$ctx"
  mkdir -p "$ctx/app" "$wheels"
  echo "$REQS" | sed '/^---$/,$d' >"$ctx/requirements.txt"
  echo "$REQS" | sed '1,/^---$/d' >"$ctx/constraints.txt"
  if [ "$(cat "$wheels/.inputs" 2>/dev/null)" != "$REQS_H" ]; then
    note "downloading wheels"
    rm -rf "$wheels" && mkdir -p "$wheels"
    "$PY" -m pip download -q --disable-pip-version-check -d "$wheels" "${target[@]}" \
      -r "$ctx/requirements.txt" -c "$ctx/constraints.txt" || die "pip download failed (see above)"
    echo "$REQS_H" >"$wheels/.inputs"
  fi
  "$PY" -m pip install -q --disable-pip-version-check --no-index --find-links "$wheels" --no-compile \
    --target "$ctx/site" "${target[@]}" -r "$ctx/requirements.txt" -c "$ctx/constraints.txt" \
    || die "pip install --target failed (see above)"
  rm -rf "$ctx/site/bin"  # console scripts point at the host's interpreter; run `python3 -m uvicorn`
  # The installed package's layout: the repository's fakes/ is simstack.fakes.
  tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -c simstack | tar -C "$ctx/app" -x
  mkdir -p "$ctx/app/simstack/fakes"
  tar -C "$ROOT/fakes" --exclude=__pycache__ --exclude='*.pyc' -c . | tar -C "$ctx/app/simstack/fakes" -x
  cat >"$ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE
COPY site $STANDINS_ROOT/site
COPY app $STANDINS_ROOT/app
ENV PYTHONPATH=$STANDINS_ROOT/app:$STANDINS_ROOT/site PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN ["python3", "-m", "compileall", "-q", "$STANDINS_ROOT"]
WORKDIR $STANDINS_ROOT/app
EXPOSE $STANDINS_PORTS
ENTRYPOINT ["python3"]
CMD $STANDINS_CMD
EOF
  docker build -q --network=none --force-rm --label "$INPUTS_LABEL=$1" --label "$SOURCES_LABEL=$SOURCES_HASH" \
    -t "$STANDINS_IMAGE" "$ctx" >"$ctx/build.log" 2>&1 \
    || { cat "$ctx/build.log" >&2; die "docker build of $STANDINS_IMAGE failed"; }
}

t=$(date +%s.%N)
step "stand-ins $STANDINS_IMAGE"
[ -f "$ROOT/fakes/api.py" ] && [ -f "$ROOT/fakes/auth.py" ] \
  || note "warning: fakes/api.py or fakes/auth.py is missing; the image will not serve yet"
REQS="$(standins_requirements)"
REQS_H="$(echo "$REQS" | sha)"
H="$( { docker image inspect -f '{{.Id}}' "$BASE_IMAGE"; echo "$REQS_H $SOURCES_HASH $STANDINS_CMD"; declare -f build_standins; } | sha)"
if ! up_to_date "$STANDINS_IMAGE" "$H"; then
  build_standins "$H"
  note "built: $(docker image inspect -f '{{.Size}}' "$STANDINS_IMAGE" | awk '{ printf "%d MB", $1 / 1e6 }')"
fi
note "($(since "$t"))"

# ---------------------------------------------------------------------------------------------
# 3. Toxiproxy image

build_toxiproxy() {
  local ctx="$BUILD/toxiproxy"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$ROOT/bin/toxiproxy-server" "$ctx/toxiproxy"
  cp "$ROOT/bin/toxiproxy-cli" "$ctx/toxiproxy-cli"
  cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY toxiproxy /toxiproxy
COPY toxiproxy-cli /toxiproxy-cli
EXPOSE 8474
ENTRYPOINT ["/toxiproxy"]
CMD ["-host=0.0.0.0"]
EOF
  docker build -q --network=none --force-rm --label "$INPUTS_LABEL=$1" -t "$TOXIPROXY_IMAGE" "$ctx" >"$ctx/build.log" 2>&1 \
    || { cat "$ctx/build.log" >&2; die "docker build of $TOXIPROXY_IMAGE failed"; }
}

t=$(date +%s.%N)
step "Toxiproxy $TOXIPROXY_IMAGE"
"$ROOT/scripts/install-toxiproxy.sh" >/dev/null || die "scripts/install-toxiproxy.sh failed (see above)"
H="$( { cat "$ROOT/bin/toxiproxy-server" "$ROOT/bin/toxiproxy-cli"; declare -f build_toxiproxy; } | sha)"
if ! up_to_date "$TOXIPROXY_IMAGE" "$H"; then
  build_toxiproxy "$H"
  note "built: $("$ROOT/bin/toxiproxy-server" -version 2>&1 | head -1)"
fi
note "($(since "$t"))"

# Images replaced by a rebuild keep our label but lose their tag: remove them (never anyone else's).
docker image prune -f --filter "label=$INPUTS_LABEL" >/dev/null 2>&1 || true
echo "==> images ready in $(since "$T0"): $BASE_IMAGE $STANDINS_IMAGE $TOXIPROXY_IMAGE"
