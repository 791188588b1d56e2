#!/usr/bin/env bash
# The benchmark (see bench/run-bench.ts): builds the proxy and the bench into
# dist/, then runs every scenario directly against an in-memory upstream and
# through the proxy. Extra arguments go to the harness, e.g. `--quick`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ]; then npm ci --no-audit --no-fund; fi
node node_modules/typescript/bin/tsc -p tsconfig.build.json
node node_modules/typescript/bin/tsc -p bench/tsconfig.json
exec node dist/bench/bench/run-bench.js "$@"
