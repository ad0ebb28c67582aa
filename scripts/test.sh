#!/usr/bin/env bash
# The README's second command: installs what is missing, builds, runs the
# whole test suite and ends with "N passed, N failed[, N skipped]".
# Extra arguments go to lit (e.g. -v, --filter=route).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MOE_MLIR_BUILD_DIR:-$root/build}

"$root/scripts/setup.sh" --with-onnxruntime
"$root/scripts/build.sh"

results="$build/test-results.xml"
rm -f "$results"
set +e
/usr/bin/python3 /usr/lib/llvm-22/bin/lit -sv --xunit-xml-output="$results" \
  "$@" "$build/test"
lit_status=$?
set -e
/usr/bin/python3 "$root/scripts/summarize_tests.py" "$results"
summary_status=$?
if [[ $lit_status -ne 0 || $summary_status -ne 0 ]]; then
  exit 1
fi
