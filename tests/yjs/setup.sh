#!/usr/bin/env bash
# Installs what the yjs client tests need: yjs, y-websocket (the 3.x client
# and, aliased as y-websocket-reference, the 1.5.x package whose
# bin/server.js is the reference server) and ws, pinned in
# package-lock.json. Safe to run again; exits non-zero, saying what is
# missing, when it cannot install something.
set -euo pipefail
cd "$(dirname "$0")"

fail() {
    echo "tests/yjs/setup.sh: $*" >&2
    exit 1
}

command -v node >/dev/null || fail "node is missing (the tests need Node.js 20 or later)"
command -v npm >/dev/null || fail "npm is missing"

if [ ! -d node_modules/y-websocket ] || [ ! -d node_modules/y-websocket-reference ] \
    || [ ! -d node_modules/yjs ] || [ ! -d node_modules/ws ]; then
    echo "tests/yjs/setup.sh: npm ci" >&2
    # --ignore-scripts: the reference package's optional LevelDB binding
    # is not used (the reference server runs without persistence).
    npm ci --no-audit --no-fund --ignore-scripts >&2 || fail "npm ci failed"
fi
