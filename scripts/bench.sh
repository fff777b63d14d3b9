#!/usr/bin/env bash
# `npm run bench`: installs/builds via setup.sh (apt incl. Dovecot, npm ci,
# npm run build), compiles bench/ with bench/tsconfig.json into dist-bench/,
# then runs the benchmark (private Dovecot + popgate child on 127.0.0.1).
# Not part of the test suite. Must run as root (the private Dovecot needs it).
# BENCH_RUNS (default 5) and BENCH_LOGIN_SECONDS (default 3, also the length of
# each Kerberos run) shorten a trial run. BENCH_KERBEROS_ONLY=1 runs only the
# Kerberos part (private MIT KDC, KPOP/GSSAPI; needs /usr/bin/python3 with
# python3-gssapi) and leaves bench/results/latest.md alone.
# Results: printed, and written to bench/results/latest.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

echo "bench: compiling bench/ -> dist-bench/ (bench/tsconfig.json)"
rm -rf dist-bench
npx tsc -p bench/tsconfig.json

exec node dist-bench/bench/run.js "$@"
