# Sourced (not run) by every script in scripts/: makes `node` on PATH a
# supported Node (>= 22.12). The `node` already on PATH is kept when it is new
# enough; otherwise Node 24 LTS is installed from the npm registry's
# node-linux-<arch> package (bin/node and include/node headers, so node-gyp
# builds the addon with --nodedir and downloads nothing) into .toolchain/,
# which is git-ignored, and put first on PATH. npm and npx are the host's:
# their `#!/usr/bin/env node` then runs them on this Node too.
#
#   POPGATE_USE_TOOLCHAIN=1  use the pinned Node 24 even when PATH has a newer-than-22.12 one
#
# After sourcing: POPGATE_NODE_BIN is the node every script runs.

POPGATE_NODE_VERSION=24.22.3
POPGATE_NODE_MIN=22.12.0

_popgate_version_ge() { # $1 >= $2, both x.y.z
  local a b i
  IFS=. read -r -a a <<<"$1"
  IFS=. read -r -a b <<<"$2"
  for i in 0 1 2; do
    if [ "${a[$i]:-0}" -gt "${b[$i]:-0}" ]; then return 0; fi
    if [ "${a[$i]:-0}" -lt "${b[$i]:-0}" ]; then return 1; fi
  done
  return 0
}

_popgate_toolchain_install() {
  local root="$1" arch pkg integrity dir tmp tarball got
  case "$(uname -m)" in
    x86_64) arch=x64; integrity='sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==' ;;
    aarch64 | arm64) arch=arm64; integrity='sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==' ;;
    *) echo "toolchain: ERROR: no Node ${POPGATE_NODE_VERSION} package for $(uname -m); install Node >= ${POPGATE_NODE_MIN} yourself" >&2; return 1 ;;
  esac
  pkg="node-linux-${arch}"
  dir="$root/node-v${POPGATE_NODE_VERSION}-linux-${arch}"
  if [ -x "$dir/bin/node" ] && [ -f "$dir/include/node/node_api.h" ]; then
    POPGATE_TOOLCHAIN_DIR="$dir"
    return 0
  fi
  echo "toolchain: installing Node ${POPGATE_NODE_VERSION} from the npm registry (${pkg}) into ${dir}" >&2
  mkdir -p "$root"
  tmp="$(mktemp -d "$root/.install.XXXXXX")"
  if command -v npm >/dev/null 2>&1; then
    # The registry and CA the host's npm is configured with (a mirror, a TLS proxy).
    (cd "$tmp" && npm pack --silent "${pkg}@${POPGATE_NODE_VERSION}" >/dev/null) || { rm -rf "$tmp"; echo "toolchain: ERROR: npm pack ${pkg}@${POPGATE_NODE_VERSION} failed" >&2; return 1; }
  else
    curl -fsSL -o "$tmp/${pkg}-${POPGATE_NODE_VERSION}.tgz" \
      "https://registry.npmjs.org/${pkg}/-/${pkg}-${POPGATE_NODE_VERSION}.tgz" \
      || { rm -rf "$tmp"; echo "toolchain: ERROR: download of ${pkg}@${POPGATE_NODE_VERSION} failed (no npm on PATH, tried curl)" >&2; return 1; }
  fi
  tarball="$tmp/${pkg}-${POPGATE_NODE_VERSION}.tgz"
  # Pinned here, so a changed or tampered package never runs.
  got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  if [ "$got" != "$integrity" ]; then
    rm -rf "$tmp"
    echo "toolchain: ERROR: ${pkg}-${POPGATE_NODE_VERSION}.tgz integrity ${got} is not the pinned ${integrity}" >&2
    return 1
  fi
  tar -xzf "$tarball" -C "$tmp" || { rm -rf "$tmp"; return 1; }
  rm -rf "$dir"
  mv "$tmp/package" "$dir"
  rm -rf "$tmp"
  "$dir/bin/node" --version >/dev/null || { echo "toolchain: ERROR: $dir/bin/node does not run" >&2; return 1; }
  POPGATE_TOOLCHAIN_DIR="$dir"
}

_popgate_toolchain_main() {
  local here root current=""
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  root="$here/.toolchain"
  if command -v node >/dev/null 2>&1; then
    current="$(node -p 'process.versions.node' 2>/dev/null || true)"
  fi
  if [ "${POPGATE_USE_TOOLCHAIN:-}" != 1 ] && [ -n "$current" ] && _popgate_version_ge "$current" "$POPGATE_NODE_MIN"; then
    POPGATE_NODE_BIN="$(command -v node)"
  else
    _popgate_toolchain_install "$root" || return 1
    [ -n "$current" ] && [ "${POPGATE_TOOLCHAIN_SAID:-}" != 1 ] \
      && echo "toolchain: node on PATH is v${current} (< ${POPGATE_NODE_MIN} or POPGATE_USE_TOOLCHAIN=1): using ${POPGATE_TOOLCHAIN_DIR}/bin/node" >&2
    export POPGATE_TOOLCHAIN_SAID=1
    export PATH="$POPGATE_TOOLCHAIN_DIR/bin:$PATH"
    # node-gyp: the headers that ship with this Node (overrides a user config's nodedir).
    export npm_config_nodedir="$POPGATE_TOOLCHAIN_DIR"
    POPGATE_NODE_BIN="$POPGATE_TOOLCHAIN_DIR/bin/node"
  fi
  export POPGATE_NODE_BIN
  hash -r
}

_popgate_toolchain_main || { echo "toolchain: ERROR: no Node >= ${POPGATE_NODE_MIN} available" >&2; exit 1; }
