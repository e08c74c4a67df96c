#!/usr/bin/env bash
# Measures durin's rate-limit checks over binary RPC beside the same checks
# over HTTP, on the same cores, with loadgen driving both.
#
# Variants, run alternately RUNS times, each against a freshly started
# durin with a fresh data directory:
#   http            loadgen http GET /ratelimit/{key}
#   http-p8         the same with --pipeline 8 (HTTP/1.1 pipelining)
#   rpc             loadgen rpc ratelimit.check on the shared RPC port
#   rpc-p8          the same with --pipeline 8
#   rpc-shard       loadgen rpc --shard-aware: each connection to one
#                   shard's own port, with only the keys that shard owns
#   rpc-shard-p8    the same with --pipeline 8
# Every variant checks the same 10,000 uniform keys (k0..k9999: the URL's
# {key} and the RPC object's name are the same names, so the same objects).
#
# durin runs `--cores CORES`, pinned (its default), with CONFIG; loadgen
# runs one thread, unpinned, sharing those CPUs. With the default config
# (limit 10^9) every check is granted and written durably. With
# CONFIG=loadgen/ratelimit-deny.toml (one check per key per hour) all but
# each key's first check are denied without a write, which leaves the
# protocols' and the loop's own cost. (durin's default limit, 100 per
# minute, denies nothing in a 10 s run over 10,000 keys.)
#
# Usage: loadgen/compare-rpc.sh
# Environment (defaults): RUNS (3), DURATION (10s), CONNECTIONS (64),
#   KEYS (uniform:10000), CORES (2), THREADS (1) loadgen threads,
#   CONFIG (bench/ratelimit-bench.toml; "none" runs durin without one),
#   VARIANTS ("http http-p8 rpc rpc-p8 rpc-shard rpc-shard-p8"),
#   DATA_ROOT ($TMPDIR or /tmp) where data directories go: put it on the
#   disk you mean to measure, since a tmpfs makes fsync free.
# Prints a markdown table of medians on stdout, with loadgen's and durin's
# CPU time per request (user + system: /usr/bin/time for loadgen,
# /proc/PID/stat for durin); progress goes to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
KEYS=${KEYS:-uniform:10000}
CORES=${CORES:-2}
THREADS=${THREADS:-1}
CONFIG=${CONFIG:-$ROOT/bench/ratelimit-bench.toml}
VARIANTS=${VARIANTS:-http http-p8 rpc rpc-p8 rpc-shard rpc-shard-p8}
DATA_ROOT=${DATA_ROOT:-${TMPDIR:-/tmp}}
# How long durin may take to print its listening lines, in 0.1 s steps.
READY_STEPS=600
# How long durin may take to exit after SIGTERM, in 0.1 s steps.
STOP_STEPS=100

log() { echo "compare-rpc: $*" >&2; }

for var in RUNS CONNECTIONS CORES THREADS; do
  [[ ${!var} =~ ^[1-9][0-9]*$ ]] || { log "$var must be a positive integer, not '${!var}'"; exit 2; }
done
for variant in $VARIANTS; do
  case "$variant" in
    http|http-p8|rpc|rpc-p8|rpc-shard|rpc-shard-p8) ;;
    *) log "unknown variant '$variant'"; exit 2 ;;
  esac
done
command -v jq >/dev/null || { log "jq is not installed"; exit 1; }
[[ -x /usr/bin/time ]] || { log "/usr/bin/time is not installed"; exit 1; }
CONFIG_ARGS=()
if [[ $CONFIG != none ]]; then
  [[ -f $CONFIG ]] || { log "no config file $CONFIG"; exit 2; }
  CONFIG_ARGS=(--config "$CONFIG")
fi
CLK_TCK=$(getconf CLK_TCK)

cd "$ROOT"
log "building durin and loadgen (release)"
cargo build --release -p durin -p loadgen >&2
DURIN="$ROOT/target/release/durin"
LOADGEN="$ROOT/target/release/loadgen"

TMP=$(mktemp -d)
DATA_DIR=$(mktemp -d "$DATA_ROOT/compare-rpc.XXXXXX")
SERVER_PID=""
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  for ((step = 0; step < STOP_STEPS; step++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
cleanup() { stop_server; rm -rf "$TMP" "$DATA_DIR"; }
trap cleanup EXIT

# Starts a fresh durin on a fresh data directory; sets SERVER_PID, RPC_ADDR
# and HTTP_URL. Each start writes to new files, so an old server's lines
# are never read.
STARTS=0
start_server() {
  STARTS=$((STARTS + 1))
  local out="$TMP/durin.$STARTS.out" err="$TMP/durin.$STARTS.err"
  rm -rf "$DATA_DIR/data"
  # Created here, not by the redirect below: that happens in the child,
  # which may not have run yet when the first look below reads the file.
  : >"$out"
  "$DURIN" serve --listen 127.0.0.1:0 --rpc-listen 127.0.0.1:0 \
    --data-dir "$DATA_DIR/data" --cores "$CORES" "${CONFIG_ARGS[@]}" >"$out" 2>"$err" &
  SERVER_PID=$!
  HTTP_URL=""
  for ((step = 0; step < READY_STEPS; step++)); do
    HTTP_URL=$(sed -n 's|^durin listening on \(http://[^ ]*\).*|\1|p' "$out" 2>/dev/null)
    if [[ -n $HTTP_URL ]]; then
      RPC_ADDR=$(sed -n 's|^durin rpc listening on \([^,]*\),.*|\1|p' "$out")
      [[ -n $RPC_ADDR ]] || { log "durin printed no RPC address"; exit 1; }
      return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$err" >&2; exit 1; }
    sleep 0.1
  done
  log "durin printed no address"
  exit 1
}

# durin's CPU time so far (user + system), in clock ticks.
server_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }

# Runs loadgen for one variant; its JSON summary goes to $TMP/loadgen.json,
# its CPU time (user, system, elapsed seconds) to $TMP/time.
run_loadgen() {
  local variant=$1 args=()
  case "$variant" in
    http*) args=(http --url "$HTTP_URL/ratelimit/{key}") ;;
    rpc*) args=(rpc --addr "$RPC_ADDR" --class ratelimit --method check) ;;
  esac
  [[ $variant == rpc-shard* ]] && args+=(--shard-aware)
  [[ $variant == *-p8 ]] && args+=(--pipeline 8)
  if ! /usr/bin/time -f "%U %S %e" -o "$TMP/time" "$LOADGEN" "${args[@]}" --keys "$KEYS" \
    --connections "$CONNECTIONS" --duration "$DURATION" --threads "$THREADS" --json \
    >"$TMP/loadgen.json" 2>"$TMP/client.err"; then
    log "loadgen failed: $(cat "$TMP/time" "$TMP/client.err" "$TMP/loadgen.json")"
    return 1
  fi
}

RESULTS="$TMP/results"
: >"$RESULTS"
for ((run = 1; run <= RUNS; run++)); do
  for variant in $VARIANTS; do
    start_server
    before=$(server_ticks)
    if ! run_loadgen "$variant"; then
      log "durin's stderr: $(cat "$TMP/durin.$STARTS.err")"
      exit 1
    fi
    after=$(server_ticks)
    stop_server
    # Denials: HTTP answers them 429 (an error status to loadgen); RPC
    # answers OK with allowed = false, counted as `denied`.
    result=$(jq -r '[.requests_per_sec, (.p50_us|round), (.p99_us|round),
        (.errors - (.errors_by_kind.status_429 // 0)),
        ((.errors_by_kind.status_429 // 0) + (.denied // 0)), .requests] | @tsv' "$TMP/loadgen.json")
    read -r rps p50 p99 errors denied requests <<<"$result"
    # CPU per request answered: loadgen from /usr/bin/time, durin from the
    # ticks it used while loadgen ran.
    client_us=$(awk -v n="$requests" '{ printf "%.2f", ($1 + $2) * 1e6 / n }' "$TMP/time")
    server_us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" \
      'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    denied_pct=$(awk -v d="$denied" -v n="$requests" 'BEGIN { printf "%.1f", 100 * d / n }')
    echo "$variant $rps $p50 $p99 $client_us $server_us $denied_pct $errors" >>"$RESULTS"
    log "run $run/$RUNS $variant: $rps req/s, p50 $p50 us, p99 $p99 us, loadgen $client_us us/req," \
      "durin $server_us us/req, denied $denied_pct%, errors $errors"
  done
done

median() {
  awk -v v="$1" -v col="$2" '$1 == v { print $col }' "$RESULTS" | sort -g |
    awk '{ x[NR] = $1 } END { print (NR % 2) ? x[(NR + 1) / 2] : (x[NR / 2] + x[NR / 2 + 1]) / 2 }'
}

first=${VARIANTS%% *}
base_rps=$(median "$first" 2)
echo "| variant | req/s (median) | × $first | p50 µs | p99 µs | loadgen CPU µs/req | durin CPU µs/req | denied % | errors | runs (req/s) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for variant in $VARIANTS; do
  rps=$(median "$variant" 2)
  runs=$(awk -v v="$variant" '$1 == v { printf "%s%.0f", sep, $2; sep = ", " }' "$RESULTS")
  errors=$(awk -v v="$variant" '$1 == v { s += $8 } END { print s + 0 }' "$RESULTS")
  printf '| %s | %.0f | %.2f | %.0f | %.0f | %.2f | %.2f | %s | %d | %s |\n' "$variant" "$rps" \
    "$(awk -v a="$rps" -v b="$base_rps" 'BEGIN { print a / b }')" \
    "$(median "$variant" 3)" "$(median "$variant" 4)" "$(median "$variant" 5)" \
    "$(median "$variant" 6)" "$(median "$variant" 7)" "$errors" "$runs"
done
