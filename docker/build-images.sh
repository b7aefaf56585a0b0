#!/usr/bin/env bash
# Build docker mode's images offline: no container registry is needed (none is reachable here).
#
#   1. Python base  ($SIMSTACK_BASE_IMAGE, default simstack/python-base:3.11): Debian's python3.11 .debs
#      unpacked with dpkg-deb, ldconfig'd, stdlib precompiled in a chroot, then `docker import`.
#      Set SIMSTACK_BASE_IMAGE=python:3.11-slim to build on the official image instead (it must be
#      present locally or pullable); only the default name is ever built here.
#   2. Stand-ins    ($SIMSTACK_STANDINS_IMAGE, default simstack/standins:<version>): wheels of the
#      runtime deps (simstack's dependencies minus docker/testcontainers, pinned to the versions
#      installed beside simstack) downloaded on the host, installed with `pip install --target`, plus
#      the files the stand-ins run (simstack/__init__.py, simstack/shared/, simstack/fakes/);
#      built with `DOCKER_BUILDKIT=0 docker build --network=none`. One image runs api and auth.
#   3. Toxiproxy    ($SIMSTACK_TOXIPROXY_IMAGE, default ghcr.io/shopify/toxiproxy:2.12.0): FROM scratch
#      around the toxiproxy-server simstack finds (`simstack install-toxiproxy` builds it), like the
#      official image.
#
# The names and their defaults, the stand-ins' files and requirements come from simstack/images.py
# (one source of truth with the launcher), so this script runs the same from a checkout
# (`make images`) and from an installed package (`simstack images build`, which ships it).
# Each image carries a `simstack.inputs` label, the hash of what it was built from; an image whose
# label matches is skipped, and one without the label (pulled or built elsewhere) is never replaced.
# Env: PYTHON (default .venv/bin/python), SIMSTACK_BUILD_DIR (scratch space, default docker/.build/).
set -euo pipefail
export DOCKER_BUILDKIT=0  # no buildx on these machines: classic builder

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${SIMSTACK_BUILD_DIR:-$ROOT/docker/.build}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
mkdir -p "$BUILD"
BUILD="$(cd "$BUILD" && pwd)"
exec 9>"$BUILD/.lock"
flock 9  # two builds at once would fight over the scratch space

T0=$(date +%s.%N)
STEP=0
step() { STEP=$((STEP + 1)); printf '==> [%d/3] %s\n' "$STEP" "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'build-images: %s\n' "$*" >&2; exit 1; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }
sha() { sha256sum | cut -c1-32; }

[ -x "$PY" ] || die "no Python at $PY; run \`make setup\` first (or \`simstack images build\`, or set PYTHON)"
docker info >/dev/null 2>&1 || die "no Docker engine answers; start one (\`make engine\` in a checkout; docker mode is optional: --mode local works without it)"
images_py() { (cd "$ROOT" && "$PY" -m simstack.images "$@"); }
eval "$(images_py)"

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
  images_py stage "$ctx/app" || die "staging the stand-ins' files failed (see above)"
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
REQS="$(images_py requirements)"
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
  cp "$TOXIPROXY_SERVER" "$ctx/toxiproxy"
  printf 'FROM scratch\nCOPY toxiproxy /toxiproxy\n' >"$ctx/Dockerfile"
  if [ -x "$TOXIPROXY_CLI" ]; then   # the official image has it too
    cp "$TOXIPROXY_CLI" "$ctx/toxiproxy-cli"
    echo "COPY toxiproxy-cli /toxiproxy-cli" >>"$ctx/Dockerfile"
  fi
  cat >>"$ctx/Dockerfile" <<'EOF'
EXPOSE 8474
ENTRYPOINT ["/toxiproxy"]
CMD ["-host=0.0.0.0"]
EOF
  docker build -q --network=none --force-rm --label "$INPUTS_LABEL=$1" -t "$TOXIPROXY_IMAGE" "$ctx" >"$ctx/build.log" 2>&1 \
    || { cat "$ctx/build.log" >&2; die "docker build of $TOXIPROXY_IMAGE failed"; }
}

t=$(date +%s.%N)
step "Toxiproxy $TOXIPROXY_IMAGE"
[ -n "$TOXIPROXY_SERVER" ] || die "toxiproxy-server v$TOXIPROXY_VERSION was not found: run \`simstack install-toxiproxy\` (\`make toxiproxy\` in a checkout), put it on PATH, or set SIMSTACK_TOXIPROXY_BIN"
TOXIPROXY_CLI="$(dirname "$TOXIPROXY_SERVER")/toxiproxy-cli"
H="$( { cat "$TOXIPROXY_SERVER"; [ -x "$TOXIPROXY_CLI" ] && cat "$TOXIPROXY_CLI"; declare -f build_toxiproxy; } | sha)"
if ! up_to_date "$TOXIPROXY_IMAGE" "$H"; then
  build_toxiproxy "$H"
  note "built: $("$TOXIPROXY_SERVER" -version 2>&1 | head -1)"
fi
note "($(since "$t"))"

# Images replaced by a rebuild keep our label but lose their tag: remove them (never anyone else's).
docker image prune -f --filter "label=$INPUTS_LABEL" >/dev/null 2>&1 || true
echo "==> images ready in $(since "$T0"): $BASE_IMAGE $STANDINS_IMAGE $TOXIPROXY_IMAGE"
