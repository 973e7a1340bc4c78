#!/usr/bin/env bash
# Runs the suite; "no tests collected" (pytest exit 5) counts as a failure, not a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
status=$?
if [ $status -eq 5 ]; then
  echo "run_tests: no tests were collected" >&2
  exit 1
fi
exit $status
