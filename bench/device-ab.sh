#!/usr/bin/env bash
# Two builds of durin side by side on a many-core machine: the same
# workloads, the builds alternating within each round (the first of them
# rotating), so that drift hits both alike.
#
# Usage: bench/device-ab.sh OLD_DIR NEW_DIR [OUT]
#   OLD_DIR, NEW_DIR  folders holding a `durin` binary each; NEW_DIR also
#                     holds `loadgen` and `sync_probe`
#   OUT               results folder (default /tmp/durin-ab)
# Environment: SHARDS (8) shards pinned to CPUs 0..SHARDS-1, loadgen on the
# CPUs after them (LOADGEN_CPUS, default SHARDS..2*SHARDS-1); REPS (3); DUR
# (5s) per run; CONNS (256); WORKLOADS (read,durable):
#   read     GET /counter/{key}, 10,000 uniform keys: no write
#   durable  POST /counter/{key}/increment, 10,000 uniform keys: a durable
#            write each, answered once it is fdatasynced
#   sql      POST /sql/{key}/query, a single-row INSERT into 10,000 objects
#            (NEW_DIR only; the tables are created first)
#   kvput    PUT /kv/{key}/keys/a, 40 bytes, 10,000 objects
# Output: OUT/results.tsv (build, workload, round, req/s, p50 us, p99 us,
# errors) and OUT/machine.txt with the disk's sync probe.
set -u
OLD=$1
NEW=$2
OUT=${3:-/tmp/durin-ab}
SHARDS=${SHARDS:-8}
LOADGEN_CPUS=${LOADGEN_CPUS:-$SHARDS-$((2 * SHARDS - 1))}
REPS=${REPS:-3}
DUR=${DUR:-5s}
CONNS=${CONNS:-256}
WORKLOADS=${WORKLOADS:-read,durable}
DATA=${DATA:-/tmp/durin-ab-data}
mkdir -p "$OUT"
RES=$OUT/results.tsv
: >"$RES"
{
  echo "nproc $(nproc)"; uname -r; lscpu | grep -E 'Model name|^CPU\(s\)'; df -hT /tmp | tail -1; date -u
  "$NEW"/sync_probe --dir /tmp --count 2000
} >"$OUT/machine.txt" 2>&1

PID=""
start() { # dir -> sets URL and PID
  rm -rf "$DATA"; : >"$OUT/srv.out"
  "$1"/durin serve --listen 127.0.0.1:0 --rpc-listen 127.0.0.1:0 --data-dir "$DATA" \
    --cores "$SHARDS" --cpus "0-$((SHARDS - 1))" >"$OUT/srv.out" 2>>"$OUT/server.err" &
  PID=$!
  for _ in $(seq 200); do grep -q 'listening on http' "$OUT/srv.out" && break; sleep 0.05; done
  URL=$(grep -o 'http://[0-9.:]*' "$OUT/srv.out")
}
stop() { kill -9 "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
create_tables() {
  local body='{"sql": "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)"}'
  "$NEW"/loadgen http --url "$URL/sql/{key}/query" --method POST --body "$body" \
    --keys seq:10000 -c 64 -d 3s --cpus "$LOADGEN_CPUS" >/dev/null 2>&1 || true
}
one() { # build dir workload round
  local build=$1 dir=$2 w=$3 round=$4 args
  start "$dir"
  case $w in
    read) args=(--url "$URL/counter/{key}" --keys uniform:10000) ;;
    durable) args=(--url "$URL/counter/{key}/increment" --method POST --keys uniform:10000) ;;
    sql)
      create_tables
      args=(--url "$URL/sql/{key}/query" --method POST --keys uniform:10000
        --body '{"sql": "INSERT INTO t (v) VALUES (?)", "params": ["a row of about forty bytes of text ....."]}') ;;
    kvput) args=(--url "$URL/kv/{key}/keys/a" --method PUT --keys uniform:10000
      --body 'a row of about forty bytes of text .....') ;;
  esac
  "$NEW"/loadgen http "${args[@]}" -c "$CONNS" -d "$DUR" --cpus "$LOADGEN_CPUS" --json >"$OUT/lg.json" 2>"$OUT/lg.err"
  python3 - "$build" "$w" "$round" "$OUT/lg.json" >>"$RES" <<'PY'
import json, sys
build, w, rnd, path = sys.argv[1:5]
try:
    r = json.load(open(path))
    print(f"{build}\t{w}\t{rnd}\t{r['requests_per_sec']:.0f}\t{r['p50_us']}\t{r['p99_us']}\t{r['errors']}")
except Exception as e:
    print(f"{build}\t{w}\t{rnd}\tfailed: {e}")
PY
  tail -n1 "$RES"
  stop
}
IFS=',' read -ra WL <<<"$WORKLOADS"
for round in $(seq "$REPS"); do
  for w in "${WL[@]}"; do
    if [[ $w == sql || $w == kvput ]]; then
      one new "$NEW" "$w" "$round"
      continue
    fi
    if ((round % 2)); then order=(old new); else order=(new old); fi
    for build in "${order[@]}"; do
      if [[ $build == old ]]; then one old "$OLD" "$w" "$round"; else one new "$NEW" "$w" "$round"; fi
    done
  done
done
