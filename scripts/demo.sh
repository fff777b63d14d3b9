#!/usr/bin/env bash
# Runs the popgate demo: installs/builds via setup.sh, then hands over to the CLI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Node >= 22.12 on PATH (Node 24 LTS from the npm registry when the machine's is older).
source scripts/toolchain.sh
bash scripts/setup.sh
exec "$POPGATE_NODE_BIN" dist/cli/main.js demo "$@"
