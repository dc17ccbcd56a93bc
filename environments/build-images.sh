#!/usr/bin/env bash
# Build every step image (environments/<name>/Dockerfile) on this machine, with no registry:
#   bash environments/build-images.sh                  # set-up as needed, then every image
#   bash environments/build-images.sh analysis         # only the images named
#   bash environments/build-images.sh --fresh          # from scratch: new base, no layer cache
#   PUBFLOW_IMAGE_PREFIX=ghcr.io/me/pubflow PUBFLOW_IMAGE_TAG=0.2.0 bash environments/build-images.sh
# Images are tagged as the rules' `container:` names them (environments/images.py reads the
# prefix and tag from common.smk's image() block; the variables above override both).
#
# What it does, each step skipped when already done (idempotent, ~2 minutes from a cold machine):
#  1. installs Docker (Debian's docker.io) if the daemon is missing, and starts `dockerd` in
#     the background if it does not answer (log: /var/log/pubflow-dockerd.log);
#  2. makes the base image the Dockerfiles name, `python:3.11-slim`, from Debian's archive with
#     mmdebstrap (no registry is reachable here). Only this locally made base gets the
#     outbound proxy's CA certificates (/usr/local/share/ca-certificates/*.crt): the project's
#     Dockerfiles stay as they would be on a machine that pulls the real base;
#  3. `docker build`s each image from a small context (steps/ and the image's folder), labelled
#     with the version, the sha256 of the steps/ code and of the lock baked in.
# It calls /usr/bin/docker, the daemon's own client (another `docker` on PATH may want buildx),
# and never --pull.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=/usr/bin/docker
BASE=python:3.11-slim
PY=${PYTHON:-python3}
PREFIX=${PUBFLOW_IMAGE_PREFIX:-}
TAG=${PUBFLOW_IMAGE_TAG:-}
fresh=()
if [ "${1:-}" = --fresh ]; then
  fresh=(--no-cache)
  shift
fi

log() { printf '[images] %s\n' "$*" >&2; }
seconds() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(seconds)" 'BEGIN { printf "%.0f s", b - a }'; }
as_root() {
  if [ "$(id -u)" != 0 ]; then
    log "$* needs root: run this script as root, or do that step by hand"
    exit 1
  fi
}

# --- 1. Docker -----------------------------------------------------------------------------
if [ ! -x "$DOCKER" ] || ! command -v dockerd >/dev/null; then
  as_root "installing docker.io"
  t=$(seconds)
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  log "installed docker.io ($(since "$t"))"
fi
if ! "$DOCKER" info >/dev/null 2>&1; then
  as_root "starting dockerd"
  t=$(seconds)
  # A daemon killed with its machine session leaves pid files behind, whose process may
  # linger as a zombie that nothing reaps: dockerd would refuse to start, or wait for it.
  for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    if [ -f "$pidfile" ]; then
      state=$(awk '{ print $3 }' "/proc/$(cat "$pidfile")/stat" 2>/dev/null || true)
      if [ -z "$state" ] || [ "$state" = Z ]; then rm -f "$pidfile"; fi
    fi
  done
  nohup dockerd >/var/log/pubflow-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    "$DOCKER" info >/dev/null 2>&1 && break
    sleep 0.5
  done
  "$DOCKER" info >/dev/null 2>&1 || { log "dockerd did not start: see /var/log/pubflow-dockerd.log"; exit 1; }
  log "started dockerd, pid $(cat /var/run/docker.pid 2>/dev/null) ($(since "$t"))"
fi

# --- 2. The base image ---------------------------------------------------------------------
if [ ${#fresh[@]} -gt 0 ] && "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
  "$DOCKER" image rm -f "$BASE" >/dev/null
  log "removed $BASE: building everything from scratch"
fi
if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
  as_root "making the base image with mmdebstrap"
  command -v mmdebstrap >/dev/null || {
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
  }
  t=$(seconds)
  work=$(mktemp -d)
  hooks=()
  for crt in /usr/local/share/ca-certificates/*.crt; do
    [ -e "$crt" ] && hooks+=(--customize-hook="copy-in $crt /usr/local/share/ca-certificates/")
  done
  # What the official python:3.11-slim offers that Debian's python3 does not by default:
  # `python` and `pip` on PATH, and pip allowed to install into the system interpreter.
  mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-pip,python3-venv,ca-certificates,bash \
    "${hooks[@]}" \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
    --customize-hook='rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED' \
    --customize-hook='ln -sf python3 "$1"/usr/bin/python && ln -sf pip3 "$1"/usr/bin/pip' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$work/base.tar" http://deb.debian.org/debian
  # pip's own certificate bundle would not know the proxy's CA: point it at the system one
  # (in this local base only; the real python:3.11-slim needs nothing of the kind).
  "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    "$work/base.tar" "$BASE" >/dev/null
  rm -rf "$work"
  log "made $BASE from Debian bookworm with mmdebstrap ($(since "$t"))"
fi

# --- 3. The step images --------------------------------------------------------------------
steps_digest=$(cd steps && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
args=()
[ -n "$PREFIX" ] && args+=(--prefix "$PREFIX")
[ -n "$TAG" ] && args+=(--tag "$TAG")
version=$("$PY" -c 'import sys; sys.path.insert(0, "environments"); import images; print(images.default_tag())')
wanted=" $* "
built=0
while read -r name image; do
  if [ $# -gt 0 ] && [[ "$wanted" != *" $name "* ]]; then
    continue
  fi
  t=$(seconds)
  lock_digest=$(sha256sum "environments/$name/requirements.lock" | cut -c1-64)
  build_log=$(mktemp)
  if ! tar -c --exclude=__pycache__ --exclude='*.pyc' steps "environments/$name" \
    | "$DOCKER" build "${fresh[@]}" -f "environments/$name/Dockerfile" -t "$image" \
        --label "org.opencontainers.image.title=pubflow-$name" \
        --label "org.opencontainers.image.version=$version" \
        --label "pubflow.environment=$name" \
        --label "pubflow.steps-sha256=$steps_digest" \
        --label "pubflow.lock-sha256=$lock_digest" \
        - >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    log "building $image failed (above: the end of docker build's output)"
    exit 1
  fi
  rm -f "$build_log"
  size=$("$DOCKER" image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }')
  log "built $image ($size, $(since "$t"))"
  built=$((built + 1))
done < <("$PY" environments/images.py "${args[@]}")
[ "$built" -gt 0 ] || { log "no image matched: $*"; exit 1; }
if [ ${#fresh[@]} -gt 0 ]; then
  "$DOCKER" image prune -f >/dev/null  # the layers of the images just replaced
fi
