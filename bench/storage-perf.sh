#!/usr/bin/env bash
# Storage figures for PERF.md, on this machine:
#   1. durable PUTs: durin's `PUT /kv/...` (wrk, 64 connections, every PUT a
#      new key, answered once durable) beside fjall's own synced batch
#      commits from 64 writer threads (bench/src/bin/fjall_commit.rs),
#      alternating, RUNS times each;
#   2. recovery: a data directory filled with KEYS keys (fill_store, which
#      leaves its last log segment unreplayed, as a crash would), then the
#      time from starting durin to its first answered request;
#   3. memory with ALARMS pending alarms a day ahead: resident memory of a
#      restarted server beside a fresh one.
# Environment (defaults): CORES (2), RUNS (3), DURATION (10s), KEYS
# (10000000), ALARMS (1000000), DATA_ROOT ($TMPDIR or /tmp; must be a disk),
# PARTS ("puts recovery alarms") to run a subset.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORES=${CORES:-2}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
KEYS=${KEYS:-10000000}
ALARMS=${ALARMS:-1000000}
DATA_ROOT=${DATA_ROOT:-${TMPDIR:-/tmp}}
PARTS=${PARTS:-puts recovery alarms}
BIN=$ROOT/target/release
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p durin -p bench --manifest-path "$ROOT/Cargo.toml"
WORK=$(mktemp -d "$DATA_ROOT/durin-storage-perf.XXXXXX")
PID=""
cleanup() { [[ -n $PID ]] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

start_durin() { # data-dir -> PID, URL
  "$BIN/durin" serve --listen 127.0.0.1:0 --data-dir "$1" --cores "$CORES" >"$WORK/out" 2>>"$WORK/err" &
  PID=$!
  for _ in $(seq 2000); do grep -q 'listening on http' "$WORK/out" 2>/dev/null && break; sleep 0.005; done
  URL=$(grep -o 'http://[0-9.:]*' "$WORK/out")
}
stop_durin() { kill -9 "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
to_us() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v+0; else if (v ~ /ms$/) print v*1000; else if (v ~ /s$/) print v*1000000; else print v }'; }

echo "# storage-perf: $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), kernel $(uname -r), data on $(df -T "$DATA_ROOT" | awk 'NR==2 {print $1, $2}')"

if [[ " $PARTS " == *" puts "* ]]; then
  : >"$WORK/durin.txt"; : >"$WORK/fjall.txt"
  for run in $(seq "$RUNS"); do
    rm -rf "$WORK/d"; start_durin "$WORK/d"
    wrk -t2 -c64 -d"$DURATION" --latency -s "$ROOT/bench/wrk/kv_put.lua" "$URL" >"$WORK/wrk"
    stop_durin
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk"); p99=$(to_us "$(awk '$1=="99%" {print $2}' "$WORK/wrk")")
    echo "$rps $p99" >>"$WORK/durin.txt"
    echo "run $run durin: $rps PUT/s, p99 ${p99}us $(grep -E 'Non-2xx|Socket errors' "$WORK/wrk" | tr '\n' ' ')"
    rm -rf "$WORK/f"
    line=$("$BIN/fjall_commit" --dir "$WORK/f" --writers 64 --batch 1 --seconds "${DURATION%s}")
    echo "$line" | sed 's/.*puts_per_sec": \([0-9]*\).*commit_p99_us": \([0-9]*\).*/\1 \2/' >>"$WORK/fjall.txt"
    echo "run $run fjall (64 writers, synced batch of 1): $line"
  done
  d=$(awk '{print $1}' "$WORK/durin.txt" | median); dp=$(awk '{print $2}' "$WORK/durin.txt" | median)
  f=$(awk '{print $1}' "$WORK/fjall.txt" | median); fp=$(awk '{print $2}' "$WORK/fjall.txt" | median)
  echo "| system | durable puts/s | p99 µs | × fjall |"
  echo "| --- | ---: | ---: | ---: |"
  echo "| durin, PUT /kv over HTTP, 64 connections | $d | $dp | $(awk -v a="$d" -v b="$f" 'BEGIN {printf "%.2f", a/b}') |"
  echo "| fjall, 64 threads, synced batch of 1 | $f | $fp | 1.00 |"
fi

if [[ " $PARTS " == *" recovery "* ]]; then
  rm -rf "$WORK/r"
  fill_started=$(date +%s.%N)
  "$BIN/fill_store" --data-dir "$WORK/r" --keys "$KEYS" --shards "$CORES" 2>"$WORK/fill.err"
  echo "filled $KEYS keys in $(awk -v a="$fill_started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b-a}') s; $(du -sh "$WORK/r" | cut -f1) on disk, $(du -sh "$WORK/r/wal" | cut -f1) of log to replay"
  t0=$(date +%s%N)
  start_durin "$WORK/r"
  until curl -sf "$URL/healthz" >/dev/null 2>&1; do sleep 0.005; done
  t1=$(date +%s%N)
  echo "recovery: start to first answered request with $KEYS keys: $(( (t1 - t0) / 1000000 )) ms"
  curl -sf "$URL/kv/o7/keys/k7" >/dev/null && echo "a stored key reads back after recovery"
  stop_durin
fi

if [[ " $PARTS " == *" alarms "* ]]; then
  rm -rf "$WORK/fresh"; start_durin "$WORK/fresh"; sleep 2
  fresh=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status"); stop_durin
  rm -rf "$WORK/a"; start_durin "$WORK/a"
  secs=$(( ALARMS / 20000 + 5 ))
  ALARM_OBJECTS=$ALARMS ALARM_THREADS=2 wrk -t2 -c64 -d"${secs}s" -s "$ROOT/bench/wrk/kv_alarms.lua" "$URL" >"$WORK/wrk"
  echo "set alarms: $(awk '/requests in/ {print $1}' "$WORK/wrk") requests over $ALARMS objects in ${secs} s"
  loaded=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
  stop_durin
  start_durin "$WORK/a"; sleep 3
  restarted=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
  check=$(curl -s "$URL/kv/a1/alarm")
  stop_durin
  echo "resident memory: fresh server ${fresh} KiB; after setting the alarms ${loaded} KiB; restarted with them pending ${restarted} KiB; alarm of a1: $check"
fi
