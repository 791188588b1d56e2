#!/usr/bin/env bash
# The soak run (see bench/soak.ts): builds the proxy and the bench into dist/,
# then sends mixed traffic with faults through the proxy (default 10 minutes,
# 200 clients). Extra arguments go to it, e.g. `--duration 30m --clients 400`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ]; then npm ci --no-audit --no-fund; fi
node node_modules/typescript/bin/tsc -p tsconfig.build.json
node node_modules/typescript/bin/tsc -p bench/tsconfig.json
exec node dist/bench/bench/soak.js "$@"
