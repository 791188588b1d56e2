#!/usr/bin/env bash
# The whole test suite: installs what it needs (apt packages, npm modules),
# type-checks, then runs every vitest file. Extra arguments go to vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
node node_modules/typescript/bin/tsc -p tsconfig.json --noEmit
# Formatting is part of the suite: `npm run format` fixes what this reports.
node node_modules/prettier/bin/prettier.cjs --check --log-level warn . || { echo "test: files not formatted (npm run format fixes them)" >&2; exit 1; }
exec node node_modules/vitest/vitest.mjs run --reporter=default --reporter=json --outputFile=test-results.json "$@"
