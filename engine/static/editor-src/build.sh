#!/usr/bin/env bash
# Bundles the demo editor (editor.js and its npm packages, pinned in
# package-lock.json) into engine/static/editor.js, which the durin binary
# serves at /_client/editor.js. The bundle is committed: run this only
# after changing editor.js or the pinned versions.
set -euo pipefail
cd "$(dirname "$0")"
command -v npm >/dev/null || { echo "build.sh: npm is missing" >&2; exit 1; }
[ -d node_modules/esbuild ] || npm ci --no-audit --no-fund
node_modules/.bin/esbuild editor.js --bundle --minify --format=iife \
    --legal-comments=eof --target=es2020 --outfile=../editor.js
