#!/usr/bin/env bash
# `npm run loadtest`: hostile load test (issue 5). Installs/builds via setup.sh
# (apt incl. Dovecot, npm ci, npm run build), compiles bench/ with
# bench/tsconfig.json into dist-bench/, then runs bench/hostile-load.ts: a
# private Dovecot + popgate child on 127.0.0.1, 1,000 slow-loris sockets and
# 1,000 brute-force attempts from 127.0.1.x / 127.0.2.x while a normal client
# logs in and reads mail. Not part of the test suite. Must run as root (the
# private Dovecot needs it). BENCH_QUICK=1 makes it a short trial run; the
# sizes are the `hostile` settings (bench/README.md, bench/lib/settings.ts).
# Results: printed, and written to bench/results/hostile-load.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Node >= 22.12 on PATH (Node 24 LTS from the npm registry when the machine's is older).
source scripts/toolchain.sh

bash scripts/setup.sh

echo "loadtest: compiling bench/ -> dist-bench/ (bench/tsconfig.json)"
rm -rf dist-bench
npx tsc -p bench/tsconfig.json

# 1,000+ sockets here and in popgate (which inherits this limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

exec node dist-bench/bench/hostile-load.js "$@"
