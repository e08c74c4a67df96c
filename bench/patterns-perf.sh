#!/usr/bin/env bash
# The figures of PERF.md section 13: the queue (durable appends, end-to-end
# deliveries, 1 and 64 queues) and a hot counter split over N sub-objects
# (increments and the cost of a read).
#
#   cargo build --release -p durin -p loadgen -p bench
#   bench/patterns-perf.sh [BIN_DIR] [SERVER_CPUS] [LOAD_CPUS] [SECONDS]
#
# SERVER_CPUS: the CPUs the server's shards are pinned to (default 0,1);
# CORES (environment, default 2): how many shards.
# LOAD_CPUS: where loadgen and queue_e2e run (default: unpinned, sharing the
# server's cores, as on a 2-core machine).
set -euo pipefail

BIN=${1:-target/release}
SERVER_CPUS=${2:-0,1}
LOAD_CPUS=${3:-}
SECONDS_EACH=${4:-5}
PORT=18181
RPC_PORT=17181
DIR=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$DIR"' EXIT

LOADGEN=("$BIN/loadgen")
E2E=("$BIN/queue_e2e")
if [ -n "$LOAD_CPUS" ]; then
  LOADGEN=(taskset -c "$LOAD_CPUS" "$BIN/loadgen")
  E2E=(taskset -c "$LOAD_CPUS" "$BIN/queue_e2e")
fi

# Queues big enough that a run never fills one.
printf '[classes.queue]\nqueue_messages_max = 100000000\nqueue_bytes_max = 8589934592\n' > "$DIR/perf.toml"
"$BIN/durin" serve --listen "127.0.0.1:$PORT" --rpc-listen "127.0.0.1:$RPC_PORT" \
  --data-dir "$DIR/data" --cores "${CORES:-2}" --cpus "$SERVER_CPUS" --config "$DIR/perf.toml" \
  > "$DIR/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do
  curl -sf "127.0.0.1:$PORT/healthz" > /dev/null && break
  sleep 0.1
done

H="http://127.0.0.1:$PORT"
load() { "${LOADGEN[@]}" http -c 64 -d "${SECONDS_EACH}s" "$@" 2>&1 | grep -E "req/s|p50|statuses"; }
e2e() { "${E2E[@]}" --addr "127.0.0.1:$PORT" --seconds "$SECONDS_EACH" "$@" 2>&1 | tail -1; }
BATCH=$(python3 -c 'import json; print(json.dumps({"messages": ["x" * 100] * 100}))')

echo "## durable appends (100-byte messages, 64 connections)"
echo "# 1 queue, one message per append"; load --method POST --body x --url "$H/queue/a1/messages"
echo "# 64 queues, one message per append"; load --method POST --body x --url "$H/queue/a64-{key}/messages" --keys uniform:64
echo "# 1 queue, 100 per append"; load --method POST -H 'Content-Type: application/json' --body "$BATCH" --url "$H/queue/d1-0/messages"
echo "# 64 queues, 100 per append"; load --method POST -H 'Content-Type: application/json' --body "$BATCH" --url "$H/queue/d64-{key}/messages" --keys uniform:64

echo "## draining what the batches left (pull up to 1000, ack through)"
echo "# 1 queue, 1 consumer"; e2e --prefix d1- --queues 1 --producers 0 --consumers 1
echo "# 64 queues, 8 consumers"; e2e --prefix d64-k --queues 64 --producers 0 --consumers 8

echo "## end to end: producers and consumers at once"
echo "# 1 queue, 8 producers, 1 consumer"; e2e --prefix e1- --queues 1 --producers 8 --consumers 1
echo "# 1 queue, 8 producers of 10-message batches, 1 consumer"; e2e --prefix e2- --queues 1 --producers 8 --consumers 1 --batch 10
echo "# 64 queues, 16 producers, 8 consumers"; e2e --prefix e3- --queues 64 --producers 16 --consumers 8
echo "# 64 queues, 16 producers of 10-message batches, 8 consumers"; e2e --prefix e4- --queues 64 --producers 16 --consumers 8 --batch 10

echo "## one hot counter over N sub-objects (increments)"
echo "# N = 1"; load --method POST --url "$H/counter/hot/increment"
for n in 2 4 8; do
  echo "# N = $n"; load --method POST --url "$H/counter/{key}/increment" --keys "uniform:$n"
done

echo "## the cost of a read"
echo "# one counter"; load --url "$H/counter/hot"
for n in 1 2 4 8; do
  echo "# sum of N = $n"; load --url "$H/sharded/hot/counter?key=hot&shards=$n"
done
