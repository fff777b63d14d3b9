#!/usr/bin/env bash
# Builds popgate's container image with podman from deploy/Dockerfile,
# unchanged, on a machine that reaches no image registry (the test suite's
# test/deploy/*.test.ts run it; an operator can too):
#
#  1. a stand-in for the official base image node:<major>-bookworm-slim:
#     a Debian bookworm root filesystem (mmdebstrap --variant=minbase) with
#     the pinned Node (scripts/toolchain.sh: node-linux-<arch> from the npm
#     registry, binary and headers) and npm (the npm package) in /usr/local,
#     as the official image has them, tagged with the official name. Built
#     once per machine: the image carries a hash of its recipe and is rebuilt
#     only when that changes (POPGATE_REBUILD_BASE=1 forces it);
#  2. the popgate image (`podman build --pull=never --network host`), with
#     the registry the host's npm uses and the host's CA bundle handed to
#     `npm ci` as build secrets, so neither lands in a layer.
#
# podman runs here with runc, the cgroupfs manager and explicit ulimits
# (.toolchain/containers/containers.conf, selected with CONTAINERS_CONF;
# nothing under /etc changes). Prints the image names on its last lines.
#
#   POPGATE_IMAGE (default localhost/popgate:test)   the image to build
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The image gets the pinned Node 24 whatever the host runs.
POPGATE_USE_TOOLCHAIN=1 source scripts/toolchain.sh

log() { printf 'container-images: %s\n' "$*" >&2; }

for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null 2>&1 || { log "ERROR: $tool is not installed (scripts/setup.sh installs podman, buildah, runc, mmdebstrap)"; exit 1; }
done

work=".toolchain/containers"
mkdir -p "$work"
# One build at a time (test files that need the image start it in parallel):
# the second waits, then finds everything current.
exec 9>"$work/.lock"
flock 9
export CONTAINERS_CONF="$PWD/$work/containers.conf"
cat >"$CONTAINERS_CONF.tmp" <<'EOF'
# popgate's private podman settings (scripts/container-images.sh): crun fails
# here ("cgroups in hybrid mode not supported"), the default ulimits exceed
# the hard limits ("setrlimit RLIMIT_NPROC: Operation not permitted").
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1000:1000"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"

node_dir="$POPGATE_TOOLCHAIN_DIR"
node_major="${POPGATE_NODE_VERSION%%.*}"
base="docker.io/library/node:${node_major}-bookworm-slim"
image="${POPGATE_IMAGE:-localhost/popgate:test}"
npm_version="$(npm --version)"

# ---------------------------------------------------------------- stand-in base
recipe="$(printf '%s\n' "node=$POPGATE_NODE_VERSION" "npm=$npm_version" "arch=$(uname -m)" \
  "$(sed -n '/^# ---- base recipe/,/^# ---- end of base recipe/p' "${BASH_SOURCE[0]}")" | sha256sum | cut -c1-16)"
have="$(podman image inspect --format '{{ index .Labels "popgate.standin" }}' "$base" 2>/dev/null || true)"
if [ "$have" = "$recipe" ] && [ "${POPGATE_REBUILD_BASE:-0}" != 1 ]; then
  log "stand-in base $base is current ($recipe)"
else
  # ---- base recipe
  started=$SECONDS
  ctx="$(mktemp -d "$work/base.XXXXXX")"
  trap 'rm -rf "$ctx"' EXIT
  log "building the stand-in base $base: mmdebstrap bookworm minbase"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$ctx/rootfs.tar"
  podman import --quiet "$ctx/rootfs.tar" localhost/popgate-rootfs:bookworm >/dev/null
  rm -f "$ctx/rootfs.tar"
  mkdir -p "$ctx/node/bin"
  cp "$node_dir/bin/node" "$ctx/node/bin/node"
  cp -a "$node_dir/include" "$ctx/node/include"
  (cd "$ctx" && npm pack --silent "npm@$npm_version" >/dev/null && tar -xzf "npm-$npm_version.tgz" && mv package npm && rm "npm-$npm_version.tgz")
  cat >"$ctx/Containerfile" <<EOF
FROM localhost/popgate-rootfs:bookworm
COPY node/bin/node /usr/local/bin/node
COPY node/include/node /usr/local/include/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && node --version && npm --version
LABEL popgate.standin="$recipe"
CMD ["node"]
EOF
  podman build --quiet --pull=never --format docker -t "$base" "$ctx" >/dev/null
  podman rmi --force localhost/popgate-rootfs:bookworm >/dev/null 2>&1 || true
  rm -rf "$ctx"
  trap - EXIT
  log "stand-in base $base built in $((SECONDS - started)) s"
  # ---- end of base recipe
fi

# ---------------------------------------------------------------- popgate image
secrets="$(mktemp -d "$work/secrets.XXXXXX")"
trap 'rm -rf "$secrets"' EXIT
# Only the registry (and its credentials, if any) of the host's npm: a user
# config's other settings (nodedir=...) do not fit the image.
{
  printf 'registry=%s\n' "$(npm config get registry)"
  grep -E '^//[^ ]+:(_authToken|_auth|username|_password)=' "$HOME/.npmrc" 2>/dev/null || true
  # A marker the tests look for in every layer: it must be in none.
  printf '# popgate-build-secret-marker\n'
} >"$secrets/npmrc"
ca=/etc/ssl/certs/ca-certificates.crt
started=$SECONDS
log "building $image from deploy/Dockerfile (base $base)"
podman build --pull=never --network host --format docker \
  --secret "id=npmrc,src=$secrets/npmrc" \
  ${ca:+--secret "id=ca,src=$ca"} \
  -f deploy/Dockerfile -t "$image" . >"$work/build.log" 2>&1 || {
  tail -n 40 "$work/build.log" >&2
  log "ERROR: podman build failed (whole log: $work/build.log)"
  exit 1
}
log "$image built in $((SECONDS - started)) s"
echo "base=$base"
echo "image=$image"
