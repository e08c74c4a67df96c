#!/usr/bin/env bash
# SQL storage figures for PERF.md, side by side in one run on this machine,
# all through the bundled loadgen over HTTP with 64 connections:
#   1. durable single-row INSERT over 10,000 sql objects beside durin's own
#      durable KV PUT over 10,000 kv objects, alternating, RUNS times each;
#   2. durable INSERTs into one hot object;
#   3. point SELECT by primary key (a random id each time) on a
#      1,000,000-row table, beside a KV GET of one object (one object is
#      served by one shard: that is the ceiling);
#   4. log bytes per request (storage_log_bytes_total over each measured
#      run) and the server's resident memory.
# Each measured run follows a 3 s warm-up of the same load.
# Environment (defaults): CORES (2), RUNS (2), DURATION (10s), DURIN_CPUS
# and LOADGEN_CPUS (unset: not pinned, sharing the CPUs), LOADGEN_THREADS
# (loadgen's default), DATA_ROOT ($TMPDIR or /tmp), SKIP_BUILD (set: use
# the binaries already in target/release).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORES=${CORES:-2}
RUNS=${RUNS:-2}
DURATION=${DURATION:-10s}
DATA_ROOT=${DATA_ROOT:-${TMPDIR:-/tmp}}
BIN=$ROOT/target/release
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release -q -p durin -p loadgen --manifest-path "$ROOT/Cargo.toml"
WORK=$(mktemp -d "$DATA_ROOT/durin-sql-perf.XXXXXX")
PID=""
cleanup() { [[ -n $PID ]] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
# The 1 M-row table is filled by one statement: it needs a longer budget.
printf '[classes.sql]\nsql_statement_time_ms = 60000\n' >"$WORK/durin.toml"

start_durin() { # config file -> PID, URL
  "$BIN/durin" serve --listen 127.0.0.1:0 --rpc-listen 127.0.0.1:0 --data-dir "$WORK/d" \
    --cores "$CORES" ${DURIN_CPUS:+--cpus "$DURIN_CPUS"} --config "$1" >"$WORK/out" 2>>"$WORK/err" &
  PID=$!
  for _ in $(seq 4000); do grep -q 'listening on http' "$WORK/out" 2>/dev/null && break; sleep 0.005; done
  URL=$(grep -o 'http://[0-9.:]*' "$WORK/out")
}
start_durin "$WORK/durin.toml"
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
metric() { curl -s "$URL/metrics" | awk -v m="$1" '$1 ~ "^durin_"m"({|$)" {s += $2} END {print s+0}'; }
load() { # label, then loadgen http arguments
  local label=$1; shift
  # A warm-up first, the same for every system: an object idle for
  # sql_idle_timeout_ms (10 s, as long as the run before) has closed its
  # connection, and reopening 10,000 of them is not the steady state.
  "$BIN/loadgen" http -c 64 -d 3s ${LOADGEN_CPUS:+--cpus "$LOADGEN_CPUS"} \
    ${LOADGEN_THREADS:+--threads "$LOADGEN_THREADS"} "$@" >/dev/null 2>&1
  local bytes0 bytes1 rps p99 n
  bytes0=$(metric storage_log_bytes_total)
  "$BIN/loadgen" http -c 64 -d "$DURATION" ${LOADGEN_CPUS:+--cpus "$LOADGEN_CPUS"} \
    ${LOADGEN_THREADS:+--threads "$LOADGEN_THREADS"} "$@" >"$WORK/lg"
  bytes1=$(metric storage_log_bytes_total)
  n=$(awk '$1=="requests" {gsub(",", "", $2); print $2}' "$WORK/lg")
  rps=$(awk '$1=="requests" {print $(NF-1)}' "$WORK/lg")
  p99=$(grep -o 'p99 [0-9.]*[mu]*s' "$WORK/lg" | head -1)
  echo "$label: $rps req/s, $p99, $(( (bytes1 - bytes0) / (n > 0 ? n : 1) )) log bytes/request; $(grep -E '^  (statuses|errors)' "$WORK/lg" | tr -s ' ' | tr '\n' ';')"
}

echo "# sql-perf: $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), kernel $(uname -r), durin --cores $CORES, $(git -C "$ROOT" rev-parse --short HEAD)"
echo "creating a table in 10,000 sql objects and the hot one..."
CREATE='{"sql": "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)"}'
# curl's URL ranges: four processes, each 2,500 requests on one kept-alive
# connection (waited for by PID: the server is a child of this shell too).
creators=()
for part in 0 1 2 3; do
  curl -sf -o /dev/null -X POST -d "$CREATE" "$URL/sql/k[$((part * 2500))-$((part * 2500 + 2499))]/query" &
  creators+=($!)
done
wait "${creators[@]}"
curl -sf -o /dev/null -X POST -d "$CREATE" "$URL/sql/hot/query"
INSERT='{"sql": "INSERT INTO t (v) VALUES (?)", "params": ["a row of about forty bytes of text ....."]}'
for run in $(seq "$RUNS"); do
  load "run $run kv PUT, 10,000 objects" --url "$URL/kv/{key}/keys/a" --method PUT \
    --body 'a row of about forty bytes of text .....' --keys uniform:10000
  load "run $run sql INSERT, 10,000 objects" --url "$URL/sql/{key}/query" --method POST \
    --body "$INSERT" --keys uniform:10000
  echo "  object k7 now: $(curl -s -X POST "$URL/sql/k7/query" -d '{"sql": "SELECT count(*) FROM t"}')"
done
load "kv PUT, one hot object (reference)" --url "$URL/kv/hot/keys/a" --method PUT \
  --body 'a row of about forty bytes of text .....'
load "sql INSERT, one hot object" --url "$URL/sql/hot/query" --method POST --body "$INSERT"
echo "filling a 1,000,000-row table..."
start=$(date +%s.%N)
curl -s -X POST "$URL/sql/big/query" -d '{"sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"}' >/dev/null
cat >"$WORK/fill.json" <<'JSON'
{"sql": "INSERT INTO t (id, v) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000000) SELECT x, printf('value-%08d', x) FROM c"}
JSON
curl -s -X POST "$URL/sql/big/query" --data-binary @"$WORK/fill.json"
echo; echo "  filled in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}') s"
curl -s "$URL/sql/big"; echo
load "kv GET, one hot object (reference)" --url "$URL/kv/hot/keys/a"
load "sql point SELECT by primary key, 1 M rows" --url "$URL/sql/big/query" --method POST \
  --body '{"sql": "SELECT v FROM t WHERE id = abs(random() % 1000000) + 1"}'
echo "resident memory: $(rss_kib) KiB; SQL connections open: $(metric sql_connections_open); objects: $(metric objects_live)"
# The same point reads with a page cache that holds the whole table (a
# per-class setting): what the reads cost when no page comes from the store.
kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
printf '[classes.sql]\nsql_cache_bytes_max = 33554432\n' >"$WORK/big-cache.toml"
start_durin "$WORK/big-cache.toml"
load "sql point SELECT by primary key, 1 M rows, 32 MiB page cache" --url "$URL/sql/big/query" \
  --method POST --body '{"sql": "SELECT v FROM t WHERE id = abs(random() % 1000000) + 1"}'
