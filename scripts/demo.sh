#!/usr/bin/env bash
# Runs the popgate demo: installs/builds via setup.sh, then hands over to the CLI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec node dist/cli/main.js demo "$@"
