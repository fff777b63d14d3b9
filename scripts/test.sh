#!/usr/bin/env bash
# The whole check, as CI runs it: setup (installs + build), typecheck, lint
# (eslint.config.js), the full vitest suite, then one plain closing line
# `N passed, N failed[, N skipped]`
# computed from vitest's JSON reporter. Exits non-zero if the typecheck failed,
# any test failed or was skipped, a test file failed to run, no test ran, or the
# JSON report is missing; a lint finding fails it too.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Node >= 22.12 on PATH (Node 24 LTS from the npm registry when the machine's is older).
source scripts/toolchain.sh

bash scripts/setup.sh

typecheck_rc=0
echo "test: npm run typecheck"
npm run typecheck || typecheck_rc=$?
if [ "$typecheck_rc" -ne 0 ]; then
  echo "test: typecheck FAILED (exit $typecheck_rc); running the tests anyway" >&2
fi

lint_rc=0
echo "test: npm run lint"
npm run lint || lint_rc=$?
if [ "$lint_rc" -ne 0 ]; then
  echo "test: lint FAILED (exit $lint_rc); running the tests anyway" >&2
fi

RESULTS=.vitest-results.json
rm -f "$RESULTS"

vitest_rc=0
echo "test: npx vitest run"
npx vitest run --reporter=default --reporter=json --outputFile="$RESULTS" || vitest_rc=$?

if [ ! -s "$RESULTS" ]; then
  echo "test: ERROR: $RESULTS missing or empty (vitest exit $vitest_rc)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

# Prints "passed failed skipped failedFiles total" from the JSON report.
counts="$(node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const n = (k) => (typeof r[k] === "number" ? r[k] : 0);
  // A test file that failed outside any test (import error, failing
  // beforeAll/afterAll) is a failed suite with no failed assertion of its own.
  let failedFiles = 0;
  for (const f of r.testResults ?? []) {
    const a = f.assertionResults ?? [];
    if (f.status === "failed" && !a.some((t) => t.status === "failed")) failedFiles++;
  }
  console.log([n("numPassedTests"), n("numFailedTests"),
    n("numPendingTests") + n("numTodoTests"), failedFiles, n("numTotalTests")].join(" "));
' "$RESULTS")" || {
  echo "test: ERROR: cannot read $RESULTS" >&2
  echo "0 passed, 1 failed"
  exit 1
}
read -r passed failed skipped failed_files total <<<"$counts"

rc=0
[ "$vitest_rc" -eq 0 ] || rc=1
[ "$typecheck_rc" -eq 0 ] || rc=1
[ "$lint_rc" -eq 0 ] || rc=1
[ "$failed" -eq 0 ] || rc=1
[ "$skipped" -eq 0 ] || rc=1
[ "$total" -gt 0 ] || { echo "test: ERROR: no test ran" >&2; rc=1; }
if [ "$failed_files" -gt 0 ]; then
  echo "test: $failed_files test file(s) failed outside their tests (import or hook error)" >&2
  rc=1
fi
[ "$typecheck_rc" -eq 0 ] || echo "test: typecheck failed" >&2
[ "$lint_rc" -eq 0 ] || echo "test: lint failed" >&2

failed_total=$((failed + failed_files))
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed_total failed, $skipped skipped"
else
  echo "$passed passed, $failed_total failed"
fi
exit "$rc"
