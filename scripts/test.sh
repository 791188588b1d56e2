#!/usr/bin/env bash
# The whole test suite: installs what it needs (apt packages, npm modules),
# type-checks, then runs every vitest file. Extra arguments go to vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
node node_modules/typescript/bin/tsc -p tsconfig.json --noEmit
exec node node_modules/vitest/vitest.mjs run --reporter=default --reporter=json --outputFile=test-results.json "$@"
