#!/usr/bin/env bash
# `npm run bench`: installs/builds via setup.sh (apt incl. Dovecot, npm ci,
# npm run build), compiles bench/ with bench/tsconfig.json into dist-bench/,
# then runs bench/run.ts (private Dovecot, in-memory backend, MIT KDC, nginx,
# stunnel4 and popgate children on 127.0.0.1). Not part of the test suite.
# Must run as root (the private Dovecot needs it). Method, figures and the
# settings (BENCH_PARTS, BENCH_RUNS, BENCH_QUICK=1 for a trial run,
# BENCH_SETTINGS): bench/README.md. Results: printed, and written to
# bench/results/ (latest.md, compare.md, compare-logins.svg; compare.json,
# the raw figures, is not in git). Bench-only apt packages (not in setup.sh,
# the test set): nginx + libnginx-mod-mail (the mail proxy is a dynamic
# module) and stunnel4 (the raw TLS splice baseline).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Node >= 22.12 on PATH (Node 24 LTS from the npm registry when the machine's is older).
source scripts/toolchain.sh

bash scripts/setup.sh

BENCH_APT_PACKAGES=(nginx libnginx-mod-mail stunnel4)
bench_missing=()
for pkg in "${BENCH_APT_PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
  [ "$status" = "install ok installed" ] || bench_missing+=("$pkg")
done
if [ "${#bench_missing[@]}" -eq 0 ]; then
  echo "bench: apt packages for the nginx comparison already installed (${BENCH_APT_PACKAGES[*]})"
else
  echo "bench: installing apt packages for the nginx comparison: ${bench_missing[*]}"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo -n); fi
  # Installing does not start the system nginx/stunnel here (policy-rc.d); the benchmark starts private instances.
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${BENCH_APT_PACKAGES[@]}"
fi

echo "bench: compiling bench/ -> dist-bench/ (bench/tsconfig.json)"
rm -rf dist-bench
npx tsc -p bench/tsconfig.json

exec node dist-bench/bench/run.js "$@"
