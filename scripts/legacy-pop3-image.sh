#!/usr/bin/env bash
# Builds the stand-in legacy POP3 server image for the sidecar overlay test
# (test/deploy/sidecar-pod.test.ts) from test/fixtures/legacy-pop3: Dovecot on
# 127.0.0.1 (port from the overlay under test), FROM the same base as popgate's image. Run
# scripts/container-images.sh first (it makes the base and containers.conf).
# Prints the image name on its last line.
#
#   LEGACY_POP3_IMAGE (default localhost/legacy-pop3:test)   the image to build
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf 'legacy-pop3-image: %s\n' "$*" >&2; }

work=".toolchain/containers"
export CONTAINERS_CONF="$PWD/$work/containers.conf"
[ -f "$CONTAINERS_CONF" ] || { log "ERROR: $CONTAINERS_CONF missing: run scripts/container-images.sh first"; exit 1; }
base="docker.io/library/node:24-bookworm-slim"
podman image exists "$base" || { log "ERROR: $base missing: run scripts/container-images.sh first"; exit 1; }
image="${LEGACY_POP3_IMAGE:-localhost/legacy-pop3:test}"

started=$SECONDS
log "building $image from test/fixtures/legacy-pop3 (base $base)"
podman build --pull=never --network host --format docker \
  -f test/fixtures/legacy-pop3/Containerfile -t "$image" test/fixtures/legacy-pop3 >"$work/legacy-build.log" 2>&1 || {
  tail -n 40 "$work/legacy-build.log" >&2
  log "ERROR: podman build failed (whole log: $work/legacy-build.log)"
  exit 1
}
log "$image built in $((SECONDS - started)) s"
echo "image=$image"
