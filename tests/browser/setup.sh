#!/usr/bin/env bash
# Installs what the browser tests need, and nothing that is already there:
# Debian's chromium (the tests never download a browser build of their own)
# and playwright-core, pinned in package-lock.json. Safe to run again; exits
# non-zero, saying what is missing, when it cannot install something.
set -euo pipefail
cd "$(dirname "$0")"

CHROMIUM=/usr/bin/chromium

fail() {
    echo "tests/browser/setup.sh: $*" >&2
    exit 1
}

if [ ! -x "$CHROMIUM" ]; then
    command -v apt-get >/dev/null || fail "$CHROMIUM is missing and there is no apt-get to install it"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || fail "$CHROMIUM is missing; install it as root: apt-get install -y chromium"
        SUDO="sudo"
    fi
    echo "tests/browser/setup.sh: installing chromium with apt-get" >&2
    $SUDO apt-get update -qq >&2 || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >&2 \
        || fail "apt-get install chromium failed"
    [ -x "$CHROMIUM" ] || fail "chromium was installed but $CHROMIUM is not there"
fi

command -v node >/dev/null || fail "node is missing (the tests need Node.js 20 or later)"
command -v npm >/dev/null || fail "npm is missing"

if [ ! -d node_modules/playwright-core ]; then
    echo "tests/browser/setup.sh: npm ci" >&2
    npm ci --no-audit --no-fund >&2 || fail "npm ci failed"
fi
