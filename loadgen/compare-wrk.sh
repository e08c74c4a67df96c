#!/usr/bin/env bash
# Drives the ceiling server with wrk and with loadgen, alternately, to show
# that loadgen pushes a server at least as hard as wrk does.
#
# The ceiling server runs on SERVER_CPUS with one thread per CPU listed;
# each client is pinned with taskset to CLIENT_CPUS and runs one thread per
# CPU listed there. Every run gets a freshly started server; runs alternate
# wrk, loadgen, wrk, loadgen, ... so that drift on a shared machine hits both.
#
# Usage: loadgen/compare-wrk.sh
# Environment (defaults): RUNS (3), DURATION (10s), CONNECTIONS (64),
#   SERVER_CPUS (0), CLIENT_CPUS (1).
# Prints a markdown table of medians on stdout, with each client's CPU time
# per request (user + system, from /usr/bin/time); progress goes to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
# How long the server may take to print its listening line, in 0.1 s steps.
READY_STEPS=600

log() { echo "compare-wrk: $*" >&2; }
count_cpus() { taskset -c "$1" true && python3 -c "
import sys
n = 0
for part in sys.argv[1].split(','):
    a, _, b = part.partition('-')
    n += int(b or a) - int(a) + 1
print(n)" "$1"; }

command -v wrk >/dev/null || { log "wrk is not installed"; exit 1; }
command -v jq >/dev/null || { log "jq is not installed"; exit 1; }
SERVER_THREADS=$(count_cpus "$SERVER_CPUS")
CLIENT_THREADS=$(count_cpus "$CLIENT_CPUS")

cd "$ROOT"
log "building ceiling and loadgen (release)"
cargo build --release -p bench -p loadgen >&2
CEILING="$ROOT/target/release/ceiling"
LOADGEN="$ROOT/target/release/loadgen"

TMP=$(mktemp -d)
SERVER_PID=""
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
cleanup() { stop_server; rm -rf "$TMP"; }
trap cleanup EXIT

# Starts a fresh ceiling server; sets SERVER_PID and URL. Each start writes
# to new files: the shell truncates a redirect only once the child runs, so
# a reused file could still show the previous server's address.
STARTS=0
start_server() {
  STARTS=$((STARTS + 1))
  local out="$TMP/ceiling.$STARTS.out" err="$TMP/ceiling.$STARTS.err"
  # Created here, not by the redirect below: that happens in the child,
  # which may not have run yet when the first look below reads the file.
  : >"$out"
  "$CEILING" --listen 127.0.0.1:0 --cores "$SERVER_THREADS" --cpus "$SERVER_CPUS" \
    >"$out" 2>"$err" &
  SERVER_PID=$!
  URL=""
  for ((step = 0; step < READY_STEPS; step++)); do
    URL=$(sed -n 's|^ceiling listening on \(http://[^ ]*\).*|\1|p' "$out" 2>/dev/null)
    [[ -n $URL ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$err" >&2; exit 1; }
    sleep 0.1
  done
  log "the ceiling server printed no address"
  exit 1
}

# Prints "req/s p50_us p99_us errors" for one client run; the client's CPU
# time (user and system, in seconds) goes to $TMP/time. A client that fails
# says why on stderr and returns non-zero.
run_wrk() {
  local report="$TMP/wrk.txt"
  if ! /usr/bin/time -f "%U %S %e" -o "$TMP/time" taskset -c "$CLIENT_CPUS" wrk -t "$CLIENT_THREADS" \
    -c "$CONNECTIONS" -d "$DURATION" --latency "$URL/" >"$report" 2>"$TMP/client.err"; then
    log "wrk failed: $(cat "$TMP/time" "$TMP/client.err")"
    return 1
  fi
  awk '
    function us(t,  n, u) { n = t + 0; u = t; sub(/^[0-9.]+/, "", u)
      return n * (u == "us" ? 1 : u == "ms" ? 1e3 : u == "s" ? 1e6 : 0) }
    /^Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = us($2) }
    $1 == "99%" { p99 = us($2) }
    /Socket errors:/ { gsub(/,/, ""); errors += $4 + $6 + $8 + $10 }
    /Non-2xx/ { errors += $NF }
    END { printf "%s %.0f %.0f %d\n", rps, p50, p99, errors }' "$report"
}

run_loadgen() {
  if ! /usr/bin/time -f "%U %S %e" -o "$TMP/time" taskset -c "$CLIENT_CPUS" "$LOADGEN" http \
    --url "$URL/" --connections "$CONNECTIONS" --duration "$DURATION" \
    --threads "$CLIENT_THREADS" --json >"$TMP/loadgen.json" 2>"$TMP/client.err"; then
    log "loadgen failed: $(cat "$TMP/time" "$TMP/client.err" "$TMP/loadgen.json")"
    return 1
  fi
  jq -r '"\(.requests_per_sec) \(.p50_us|round) \(.p99_us|round) \(.errors)"' "$TMP/loadgen.json"
}

RESULTS="$TMP/results"
: >"$RESULTS"
for ((run = 1; run <= RUNS; run++)); do
  for client in wrk loadgen; do
    start_server
    if ! result=$("run_$client"); then
      log "the server's stderr: $(cat "$TMP/ceiling.$STARTS.err")"
      exit 1
    fi
    stop_server
    # Client CPU per request: (user + system) over requests answered.
    cpu_us=$(awk -v rps="${result%% *}" '{ printf "%.2f", ($1 + $2) * 1e6 / (rps * $3) }' "$TMP/time")
    echo "$client $result $cpu_us" >>"$RESULTS"
    log "run $run/$RUNS $client: $result $cpu_us (req/s p50_us p99_us errors client_cpu_us_per_request)"
  done
done

median() {
  awk -v c="$1" -v col="$2" '$1 == c { print $col }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
errors() { awk -v c="$1" '$1 == c { s += $5 } END { print s + 0 }' "$RESULTS"; }

wrk_rps=$(median wrk 2)
echo "| client | req/s (median) | × wrk | p50 µs | p99 µs | client CPU µs/request | errors | runs (req/s) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for client in wrk loadgen; do
  rps=$(median "$client" 2)
  runs=$(awk -v c="$client" '$1 == c { printf "%s%.0f", sep, $2; sep = ", " }' "$RESULTS")
  printf '| %s | %.0f | %.2f | %.0f | %.0f | %.2f | %d | %s |\n' "$client" "$rps" \
    "$(awk -v a="$rps" -v b="$wrk_rps" 'BEGIN { print a / b }')" \
    "$(median "$client" 3)" "$(median "$client" 4)" "$(median "$client" 6)" \
    "$(errors "$client")" "$runs"
done
