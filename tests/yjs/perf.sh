#!/usr/bin/env bash
# The doc class's figures in PERF.md: durin (release) beside the reference
# y-websocket 1.5.4 server, without and with LevelDB persistence.
#   cargo build --release -p durin && bash tests/yjs/setup.sh && bash tests/yjs/perf.sh
# Each step starts its own server on a free data directory and stops it.
set -euo pipefail
export NODE_NO_WARNINGS=1
cd "$(dirname "$0")"
DURIN=${DURIN:-../../target/release/durin}
PORT=18300
SECONDS_EACH=${SECONDS_EACH:-15}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

start_durin() { # config-file
    "$DURIN" serve --listen 127.0.0.1:$PORT --no-rpc --data-dir "$WORK/durin" --cores 2 --no-pin \
        --config "$1" >"$WORK/durin.log" 2>&1 &
    SERVER=$!
    until curl -sf http://127.0.0.1:$PORT/healthz >/dev/null; do sleep 0.1; done
}
start_reference() { # extra env
    env HOST=127.0.0.1 PORT=$PORT "$@" node node_modules/y-websocket-reference/bin/server.js >/dev/null 2>&1 &
    SERVER=$!
    until (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; do sleep 0.1; done
}
stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; }

echo > "$WORK/default.toml"
printf '[classes.doc]\nhibernation_timeout_ms = 1000\n' > "$WORK/hibernate.toml"
printf '[classes.doc]\ncompact_log_entries = 1000000\ncompact_log_bytes = 1073741824\ndoc_bytes_max = 1073741824\n' > "$WORK/nocompact.toml"

STEPS=${STEPS:-"deliveries memory loaded cold"}
if [[ " $STEPS " == *" deliveries "* ]]; then
echo "== deliveries: 10 rooms x 10 clients x 10 edits/s, ${SECONDS_EACH} s"
start_durin "$WORK/default.toml"
echo "durin:"; node bench.mjs deliveries --ws ws://127.0.0.1:$PORT/doc --seconds "$SECONDS_EACH"
stop; rm -rf "$WORK/durin"
start_reference
echo "reference:"; node bench.mjs deliveries --ws ws://127.0.0.1:$PORT --seconds "$SECONDS_EACH"
stop
start_reference YPERSISTENCE="$WORK/leveldb"
echo "reference+leveldb:"; node bench.mjs deliveries --ws ws://127.0.0.1:$PORT --seconds "$SECONDS_EACH"
stop

fi
if [[ " $STEPS " == *" memory "* ]]; then
echo "== memory per idle room (one socket with an awareness state)"
start_durin "$WORK/hibernate.toml"
echo "durin (hibernated):"; node bench.mjs memory --ws ws://127.0.0.1:$PORT/doc --pid "$SERVER" --rooms 1000 --wait-ms 3000
stop; rm -rf "$WORK/durin"
start_reference
echo "reference:"; node bench.mjs memory --ws ws://127.0.0.1:$PORT --pid "$SERVER" --rooms 1000 --wait-ms 3000
stop

fi
if [[ " $STEPS " == *" loaded "* ]]; then
echo "== memory per loaded doc (100 edits of 10 characters each)"
start_durin "$WORK/default.toml"
node bench.mjs fill-many --http http://127.0.0.1:$PORT/doc --rooms 400 >/dev/null
stop
start_durin "$WORK/default.toml"
# The first 200 warm the allocator up after recovery; the next 200 count.
node bench.mjs open-many --http http://127.0.0.1:$PORT/doc --pid "$SERVER" --rooms 200 >/dev/null
echo "durin:"; node bench.mjs open-many --http http://127.0.0.1:$PORT/doc --pid "$SERVER" --rooms 200 --from 200
stop; rm -rf "$WORK/durin"

fi
if [[ " $STEPS " == *" cold "* ]]; then
echo "== cold open of a doc with 100,000 logged updates"
start_durin "$WORK/nocompact.toml"
echo "fill:"; node bench.mjs fill --http http://127.0.0.1:$PORT/doc --room cold --updates 100000
stop
start_durin "$WORK/nocompact.toml"
echo "durin, log of 100,000:"; node bench.mjs open --http http://127.0.0.1:$PORT/doc --room cold
# A socket that joins and leaves empties the room: compaction by alarm.
node -e "const W=require('ws');const w=new W('ws://127.0.0.1:$PORT/doc/cold');w.on('message',()=>{w.close();process.exit(0)})"
sleep 5
stop
start_durin "$WORK/nocompact.toml"
echo "durin, after compaction:"; node bench.mjs open --http http://127.0.0.1:$PORT/doc --room cold
stop
fi
