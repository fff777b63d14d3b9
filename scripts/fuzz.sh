#!/usr/bin/env bash
# The long fuzz run (`npm run fuzz`): the property suites in test/fuzz
# (*.fuzz.test.ts, fast-check) with at least FUZZ_TOTAL cases in all (default
# 1,000,000), divided evenly among the properties. `npm test` runs the same
# suites with the small default sample (2,000 cases per property).
#
#   FUZZ_TOTAL=N     cases in all (default 1000000)
#   FUZZ_SEED=N      fast-check seed (default: the suites' fixed seed);
#                    FUZZ_SEED=random draws one (printed, so a failure replays)
#   FUZZ_WORKERS=N   parallel test files (default: nproc)
#   extra arguments go to vitest (e.g. a file filter: the total is then not checked)
#
# A failure prints fast-check's seed, shrink path and counterexample; replay it
# with `FUZZ_SEED=<seed> FUZZ_PATH=<path> npx vitest run test/fuzz/<file>`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Node >= 22.12 on PATH (Node 24 LTS from the npm registry when the machine's is older).
source scripts/toolchain.sh

total="${FUZZ_TOTAL:-1000000}"
if ! [[ "$total" =~ ^[0-9]+$ ]] || [ "$total" -lt 1 ]; then
  echo "fuzz: FUZZ_TOTAL must be a positive integer, got '$total'" >&2
  exit 2
fi

# One `fuzzIt(` per property, each at the start of a line (see test/fuzz/common.ts).
shopt -s nullglob
files=(test/fuzz/*.fuzz.test.ts)
if [ "${#files[@]}" -eq 0 ]; then
  echo "fuzz: no test/fuzz/*.fuzz.test.ts files" >&2
  exit 1
fi
properties=$(cat "${files[@]}" | grep -cE '^[[:space:]]*fuzzIt\(' || true)
if [ "$properties" -lt 1 ]; then
  echo "fuzz: no fuzzIt( properties found in ${files[*]}" >&2
  exit 1
fi
per=$(( (total + properties - 1) / properties ))

seed="${FUZZ_SEED:-}"
if [ -z "$seed" ]; then
  seed="$(sed -n 's/^export const DEFAULT_SEED = \([0-9]*\);.*/\1/p' test/fuzz/common.ts)"
elif [ "$seed" = random ]; then
  seed=$(( (RANDOM << 15 | RANDOM) ))
fi
if ! [[ "$seed" =~ ^-?[0-9]+$ ]]; then
  echo "fuzz: FUZZ_SEED must be an integer or 'random', got '$seed'" >&2
  exit 2
fi

workers="${FUZZ_WORKERS:-$(nproc 2>/dev/null || echo 2)}"
report="$(mktemp "${TMPDIR:-/tmp}/popgate-fuzz.XXXXXX")"
trap 'rm -f "$report"' EXIT

echo "fuzz: ${#files[@]} files, $properties properties x $per cases = $((properties * per)) cases (target $total), seed $seed, $workers workers"

start=$(date +%s)
rc=0
FUZZ_RUNS="$per" FUZZ_SEED="$seed" FUZZ_REPORT="$report" \
  npx vitest run test/fuzz --maxWorkers="$workers" "$@" || rc=$?
elapsed=$(( $(date +%s) - start ))

echo
echo "fuzz: per property (cases, ms):"
awk -F'\t' '{ printf "  %9d  %8d ms  %s\n", $2, $3, $1 }' "$report"
ran=$(awk -F'\t' '{ s += $2 } END { print s + 0 }' "$report")
done_props=$(wc -l <"$report" | tr -d ' ')
echo "fuzz: $ran cases in $done_props/$properties properties, seed $seed, wall time ${elapsed}s"

if [ "$rc" -ne 0 ]; then
  echo "fuzz: FAILED (vitest exit $rc); replay with FUZZ_SEED=$seed and the path fast-check printed" >&2
  exit "$rc"
fi
if [ "$#" -eq 0 ] && { [ "$done_props" -ne "$properties" ] || [ "$ran" -lt "$total" ]; }; then
  echo "fuzz: ERROR: expected $properties properties and at least $total cases" >&2
  exit 1
fi
echo "fuzz: OK, zero failures"
