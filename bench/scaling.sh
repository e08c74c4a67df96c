#!/usr/bin/env bash
# Scaling run for a 16-core machine: servers (ceiling, then durin) on CPUs
# 0..N-1 for N in 1 2 4 8, wrk with 8 threads on CPUs 8-15, three rounds.
#
# Usage: bench/scaling.sh, after `cargo build --release -p durin -p bench`.
# Environment: BIN (folder with `durin` and `ceiling`, default
# target/release), WRK (wrk binary, default wrk), OUT (results folder,
# default /tmp/durin-scaling), DUR (5s), CONNS (256).
# Output: OUT/results.tsv, one line per run: workload, shards, round,
# req/s, p50, p99, durin's groups and writes made durable, wrk's errors.
# Workloads: ceiling `GET /`; read `GET /counter/k<N>` (10,000 keys, no
# writes); uniform `GET /ratelimit/k<N>` (10,000 keys, a durable write
# each); hot `GET /ratelimit/hot` (one key, 8 shards only).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D=${BIN:-$ROOT/target/release}
WRK=${WRK:-wrk}
OUT=${OUT:-/tmp/durin-scaling}
mkdir -p "$OUT"
RES=$OUT/results.tsv
: > "$RES"
{ echo "nproc $(nproc)"; uname -r; lscpu | grep -E 'Model name|^CPU\(s\)|NUMA node'; df -hT /tmp | tail -1; date -u; } > "$OUT/machine.txt" 2>&1
DUR=${DUR:-5s}
CONNS=${CONNS:-256}
LUA=${LUA:-$ROOT/bench/wrk/uniform_keys.lua}
CONFIG=${CONFIG:-$ROOT/bench/ratelimit-bench.toml}
start() { # kind cores -> sets PORT PID
  local kind=$1 n=$2 cpus="0-$(( $2 - 1 ))"
  rm -rf /tmp/dd; : > /tmp/srv.out
  if [[ $kind == ceiling ]]; then
    "$D"/ceiling --listen 127.0.0.1:0 --cores "$n" --cpus "$cpus" > /tmp/srv.out 2>>"$OUT/server.err" &
  else
    "$D"/durin serve --listen 127.0.0.1:0 --rpc-listen 127.0.0.1:0 --data-dir /tmp/dd --cores "$n" --cpus "$cpus" --config "$CONFIG" > /tmp/srv.out 2>>"$OUT/server.err" &
  fi
  PID=$!
  for _ in $(seq 100); do grep -q 'listening on http' /tmp/srv.out && break; sleep 0.1; done
  PORT=$(grep 'listening on http' /tmp/srv.out | grep -o '[0-9]*$')
}
one() { # workload cores rep
  local w=$1 n=$2 rep=$3 url script=()
  case $w in ceiling) start ceiling "$n" ;; *) start durin "$n" ;; esac
  url=http://127.0.0.1:$PORT
  case $w in
    ceiling) url+=/ ;;
    read) script=(-s "$LUA"); export WRK_PATH_PREFIX=/counter/k ;;
    uniform) script=(-s "$LUA"); export WRK_PATH_PREFIX=/ratelimit/k ;;
    hot) url+=/ratelimit/hot ;;
  esac
  taskset -c 8-15 "$WRK" -t8 -c"$CONNS" -d"$DUR" --latency "${script[@]}" "$url" > "$OUT/wrk.tmp" 2>&1
  local rps p50 p99 err
  rps=$(awk '/Requests\/sec/ {print $2}' "$OUT/wrk.tmp")
  p50=$(awk '$1=="50%" {print $2}' "$OUT/wrk.tmp")
  p99=$(awk '$1=="99%" {print $2}' "$OUT/wrk.tmp")
  err=$(grep -E "Socket errors|Non-2xx" "$OUT/wrk.tmp" | tr '\n' ' ')
  if [[ $w != ceiling ]]; then curl -s "$url/metrics" 2>/dev/null | grep -E "^durin_storage_groups_committed_total|^durin_storage_group_writes" | awk '{s[$1 ~ /writes/ ? "w" : "g"] += $2} END {printf "groups=%d writes=%d", s["g"], s["w"]}' > "$OUT/m.tmp" || true; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$n" "$rep" "$rps" "$p50" "$p99" "$(cat "$OUT/m.tmp" 2>/dev/null)" "$err" | tee -a "$RES"
  rm -f "$OUT/m.tmp"
  kill -9 "$PID" 2>/dev/null; wait "$PID" 2>/dev/null
}
for rep in 1 2 3; do
  for n in 1 2 4 8; do
    for w in ceiling read uniform; do one $w $n $rep; done
  done
  one hot 8 $rep
done
