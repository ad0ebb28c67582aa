#!/usr/bin/env bash
# Regenerates the dialect reference from ODS and copies it into docs/dialects/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MOE_MLIR_BUILD_DIR:-$root/build}
"$root/scripts/build.sh" >/dev/null
mkdir -p "$root/docs/dialects"
cp "$build"/docs/Dialects/*.md "$root/docs/dialects/"
echo "updated: $(ls "$root"/docs/dialects)"
