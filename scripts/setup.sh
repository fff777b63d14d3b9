#!/usr/bin/env bash
# Installs everything popgate's build and test suite need on a fresh Debian 12
# machine (CI gets a new one; nothing installed by hand survives), then builds.
# Idempotent and non-interactive: reruns skip apt when every package is there.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Node >= 22.12 on PATH (Node 24 LTS from the npm registry when the machine's is older).
source scripts/toolchain.sh

# The apt set for the whole suite, now and for the Kerberos milestone.
APT_PACKAGES=(
  dovecot-core dovecot-pop3d dovecot-gssapi
  krb5-kdc krb5-admin-server krb5-user libkrb5-dev
  fetchmail mpop curl gsasl
  python3 python3-gssapi redis-server
  openssl ca-certificates
  podman runc catatonit mmdebstrap
  prometheus
  libpam0g-dev libpam-wrapper libnss-wrapper libpam-modules
  slapd ldap-utils
  tinyproxy
)
# libpam0g-dev: the addon's PAM check (native/src/pam.cc); libpam-wrapper,
# libnss-wrapper, libpam-modules: test/integration/pam-verifier.test.ts runs real
# PAM modules against a private service directory (never /etc/pam.d).
# prometheus: for its promtool (test/integration/monitoring-assets.test.ts checks
# deploy/monitoring); its server is not wanted and is kept from starting below.
# slapd, ldap-utils: the LDAP verifier's tests start their own slapd
# (test/helpers/slapd.ts); Debian's system slapd is kept from starting below.
# tinyproxy: a real HTTP forward proxy (CONNECT tunnels) for the auth_http and
# OAuth egress tests; they start their own (test/helpers/tinyproxy.ts), and
# Debian's system tinyproxy (port 8888) is kept from starting below.

log() { printf 'setup: %s\n' "$*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  fi
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
  if [ "$status" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  log "apt packages already installed (${#APT_PACKAGES[@]}), skipping apt"
else
  if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
    log "ERROR: missing packages (${missing[*]}) and not root, no sudo" >&2
    exit 1
  fi
  log "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Debian's prometheus, slapd and tinyproxy packages enable and start their servers
  # (ports 9090, 389 and 8888) from their postinsts, through invoke-rc.d or deb-systemd-invoke,
  # which all ask /usr/sbin/policy-rc.d first. Where there is none (a CI
  # machine; container images often ship one that denies every start), a
  # temporary one denies starting those three only, for this apt run.
  policy_added=0
  if [[ " ${missing[*]} " == *" prometheus "* || " ${missing[*]} " == *" slapd "* || " ${missing[*]} " == *" tinyproxy "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
    policy_tmp="$(mktemp)"
    cat >"$policy_tmp" <<'POLICY'
#!/bin/sh
# Temporary, from popgate's scripts/setup.sh: do not start Debian's prometheus, slapd or tinyproxy server.
for arg in "$@"; do
  case "$arg" in prometheus | prometheus.service | slapd | slapd.service | tinyproxy | tinyproxy.service) exit 101 ;; esac
done
exit 0
POLICY
    "${SUDO[@]}" install -m 0755 "$policy_tmp" /usr/sbin/policy-rc.d
    rm -f "$policy_tmp"
    policy_added=1
    trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  # Install the full set (not just the missing ones) so apt resolves it as one
  # transaction; already-installed packages are no-ops.
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${APT_PACKAGES[@]}"
  if [ "$policy_added" -eq 1 ]; then
    "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
  # The postinst still enabled prometheus.service for the next boot: disable it
  # (and stop it, should it run) when this run installed it on a systemd machine.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
  if [[ " ${missing[*]} " == *" slapd "* ]] && [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl disable --now slapd.service >/dev/null 2>&1 || true
  fi
  if [[ " ${missing[*]} " == *" tinyproxy "* ]] && [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl disable --now tinyproxy.service >/dev/null 2>&1 || true
  fi
  still=()
  for pkg in "${APT_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || still+=("$pkg")
  done
  if [ "${#still[@]}" -ne 0 ]; then
    log "ERROR: packages still not installed: ${still[*]}" >&2
    exit 1
  fi
  log "apt packages installed"
fi

# The deploy/k8s tests render the Kustomize overlays with `kubectl kustomize`.
# Any kubectl will do; without one, Debian's kubernetes-client (kubectl 1.20,
# kustomize v2.0.3, which the overlays are written for as well).
if ! command -v kubectl >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
    log "ERROR: kubectl missing (apt package kubernetes-client) and not root, no sudo" >&2
    exit 1
  fi
  log "kubectl not found: installing apt package kubernetes-client"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kubernetes-client
fi

if [ -f package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund
else
  log "npm install (no package-lock.json)"
  npm install --no-audit --no-fund
fi

log "npm run build"
npm run build
log "done"
