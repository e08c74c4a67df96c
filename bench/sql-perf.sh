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
# Environment (defaults): CORES (2), RUNS (2), DURATION (10s), LOADGEN_CPUS
# (unset: loadgen shares the CPUs), DATA_ROOT ($TMPDIR or /tmp).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORES=${CORES:-2}
RUNS=${RUNS:-2}
DURATION=${DURATION:-10s}
DATA_ROOT=${DATA_ROOT:-${TMPDIR:-/tmp}}
BIN=$ROOT/target/release
cargo build --release -q -p durin -p loadgen --manifest-path "$ROOT/Cargo.toml"
WORK=$(mktemp -d "$DATA_ROOT/durin-sql-perf.XXXXXX")
PID=""
cleanup() { [[ -n $PID ]] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
# The 1 M-row table is filled by one statement: it needs a longer budget.
printf '[classes.sql]\nsql_statement_time_ms = 60000\n' >"$WORK/durin.toml"

start_durin() { # config file -> PID, URL
  "$BIN/durin" serve --listen 127.0.0.1:0 --rpc-listen 127.0.0.1:0 --data-dir "$WORK/d" \
    --cores "$CORES" --config "$1" >"$WORK/out" 2>>"$WORK/err" &
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
  "$BIN/loadgen" http -c 64 -d 3s "$@" >/dev/null 2>&1
  local bytes0 bytes1 rps p99 n
  bytes0=$(metric storage_log_bytes_total)
  "$BIN/loadgen" http -c 64 -d "$DURATION" ${LOADGEN_CPUS:+--cpus "$LOADGEN_CPUS"} "$@" >"$WORK/lg"
  bytes1=$(metric storage_log_bytes_total)
  n=$(awk '$1=="requests" {gsub(",", "", $2); print $2}' "$WORK/lg")
  rps=$(awk '$1=="requests" {print $(NF-1)}' "$WORK/lg")
  p99=$(grep -o 'p99 [0-9.]*[mu]*s' "$WORK/lg" | head -1)
  echo "$label: $rps req/s, $p99, $(( (bytes1 - bytes0) / (n > 0 ? n : 1) )) log bytes/request; $(grep -E '^  (statuses|errors)' "$WORK/lg" | tr -s ' ' | tr '\n' ';')"
}

echo "# sql-perf: $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), kernel $(uname -r), durin --cores $CORES, $(git -C "$ROOT" rev-parse --short HEAD)"
echo "creating a table in 10,000 sql objects and the hot one..."
python3 - "$URL" <<'PY'
import http.client, sys, threading
host = sys.argv[1].removeprefix("http://")
body = '{"sql": "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)"}'
def work(part):
    c = http.client.HTTPConnection(host)
    for k in range(part, 10000, 8):
        c.request("POST", f"/sql/k{k}/query", body)
        r = c.getresponse(); r.read(); assert r.status == 200, r.status
part_threads = [threading.Thread(target=work, args=(p,)) for p in range(8)]
[t.start() for t in part_threads]; [t.join() for t in part_threads]
c = http.client.HTTPConnection(host)
c.request("POST", "/sql/hot/query", body); r = c.getresponse(); r.read(); assert r.status == 200
PY
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
echo; echo "  filled in $(echo "$(date +%s.%N) - $start" | bc) s"
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
