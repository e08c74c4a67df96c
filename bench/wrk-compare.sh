#!/usr/bin/env bash
# Compares durin with the ceiling server under wrk, on this machine.
#
# The ceiling server answers every request with a fixed 200 and nothing else:
# it is the upper bound of this machine's io_uring loop. durin's numbers are
# reported beside it and as a fraction of it.
#
# Workloads, run alternately (ceiling, durin-uniform, durin-hot) RUNS times,
# each against a freshly started server with a fresh data directory:
#   ceiling        GET /                  on the ceiling server
#   durin-uniform  GET /ratelimit/k<N>    10,000 keys, uniform (wrk/uniform_keys.lua)
#   durin-hot      GET /ratelimit/hot     one key
#   durin-read     GET /counter/k<N>      10,000 keys, reads only: the loop,
#                                         routing and forwarding without a
#                                         durable write (not in the default set)
#
# Usage: bench/wrk-compare.sh [--out FILE]
# Environment (defaults): CORES (2) server cores, DURATION (10s) per wrk run,
#   RUNS (3), WRK_THREADS (2), CONNECTIONS (64),
#   WORKLOADS ("ceiling durin-uniform durin-hot") to run a subset,
#   WRK_CPUS (auto) CPUs for wrk: "auto" puts wrk on the CPUs the servers do
#   not use when there are any, else it shares them; "all" never separates,
#   REPORTS_DIR (unset) keeps every raw wrk report and server stderr there,
#   DATA_ROOT ($TMPDIR or /tmp) where durin's data directories go: put it on
#   the disk you mean to measure, since a tmpfs makes fsync free.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORES=${CORES:-2}
DURATION=${DURATION:-10s}
RUNS=${RUNS:-3}
WRK_THREADS=${WRK_THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
WORKLOADS=${WORKLOADS:-ceiling durin-uniform durin-hot}
WRK_CPUS=${WRK_CPUS:-auto}
# How long a server may take to print its listening line.
READY_TIMEOUT_S=60
# How long a server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S=10

OUT=""
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while (($#)); do
  case "$1" in
    --out) [[ $# -ge 2 ]] || { echo "--out needs a file" >&2; exit 2; }; OUT=$2; shift 2 ;;
    --out=*) OUT=${1#--out=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
for var in CORES RUNS WRK_THREADS CONNECTIONS; do
  [[ ${!var} =~ ^[1-9][0-9]*$ ]] || { echo "$var must be a positive integer, not '${!var}'" >&2; exit 2; }
done
for workload in $WORKLOADS; do
  case "$workload" in
    ceiling|durin-uniform|durin-hot|durin-read) ;;
    *) echo "unknown workload '$workload'" >&2; exit 2 ;;
  esac
done

log() { echo "wrk-compare: $*" >&2; }

# --- tools and binaries -------------------------------------------------------

if ! command -v wrk >/dev/null; then
  log "installing wrk"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq wrk >/dev/null
fi

cd "$ROOT"
packages=(-p bench)
[[ " $WORKLOADS " == *" durin-"* ]] && packages+=(-p durin)
log "building ${packages[*]}"
cargo build --release "${packages[@]}"
CEILING="$ROOT/target/release/ceiling"
DURIN="$ROOT/target/release/durin"
CONFIG="$ROOT/bench/ratelimit-bench.toml"
UNIFORM_LUA="$ROOT/bench/wrk/uniform_keys.lua"

# --- CPU placement ------------------------------------------------------------

# Expands a CPU list such as "0,2-5" into one CPU per line.
expand_cpus() {
  local part
  IFS=',' read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
  done
}

# Both servers pin their threads to the first CORES CPUs this process may use;
# wrk goes on the rest, when there is a rest, so that it does not steal cycles
# from the loop it measures.
mapfile -t allowed < <(expand_cpus "$(taskset -cp $$ | sed 's/.*: //')")
server_cpus=$(IFS=','; echo "${allowed[*]:0:CORES}")
wrk_prefix=()
wrk_placement="shares the servers' CPUs"
if [[ $WRK_CPUS == auto && ${#allowed[@]} -gt $CORES ]]; then
  WRK_CPUS=$(IFS=','; echo "${allowed[*]:CORES}")
fi
if [[ $WRK_CPUS != auto && $WRK_CPUS != all ]]; then
  wrk_prefix=(taskset -c "$WRK_CPUS")
  wrk_placement="CPUs $WRK_CPUS"
fi

# --- servers ------------------------------------------------------------------

TMP=$(mktemp -d "${DATA_ROOT:-${TMPDIR:-/tmp}}/wrk-compare.XXXXXX")
SERVER_PID=""
SERVER_URL=""

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  local waited=0
  while kill -0 "$SERVER_PID" 2>/dev/null && ((waited < STOP_TIMEOUT_S * 10)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
cleanup() { stop_server; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts a server and waits for its "<name> listening on http://IP:PORT" line;
# sets SERVER_PID and SERVER_URL.
START_COUNT=0
start_server() {
  local name=$1
  shift
  # A fresh file per start: the shell truncates a reused one only once the
  # new process starts, so the previous server's line could be read back.
  START_COUNT=$((START_COUNT + 1))
  local out="$TMP/$name.$START_COUNT.stdout" err="$TMP/$name.$START_COUNT.stderr"
  "$@" >"$out" 2>"$err" &
  SERVER_PID=$!
  local waited=0
  SERVER_URL=""
  while [[ -z $SERVER_URL ]]; do
    SERVER_URL=$(sed -n "s|^$name listening on \(http://[^ ]*\).*|\1|p" "$out" | head -n1)
    [[ -n $SERVER_URL ]] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      log "$name exited before it was ready:"
      tail -n 20 "$err" >&2
      exit 1
    fi
    if ((waited >= READY_TIMEOUT_S * 10)); then
      log "$name printed no listening line within ${READY_TIMEOUT_S}s"
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

start_workload_server() {
  local workload=$1 run=$2
  case "$workload" in
    ceiling)
      start_server ceiling "$CEILING" --listen 127.0.0.1:0 --cores "$CORES"
      ;;
    durin-*)
      local data="$TMP/data-$workload-$run"
      rm -rf "$data"
      start_server durin "$DURIN" serve --listen 127.0.0.1:0 --rpc-listen 127.0.0.1:0 \
        --data-dir "$data" --cores "$CORES" --config "$CONFIG"
      ;;
  esac
}

# --- wrk and its output -------------------------------------------------------

# Converts a wrk time such as 231.00us, 1.85ms, 1.02s or 2.00m to microseconds.
to_us() {
  awk -v t="$1" 'BEGIN {
    n = t + 0; unit = t; sub(/^[0-9.]+/, "", unit)
    f["us"] = 1; f["ms"] = 1e3; f["s"] = 1e6; f["m"] = 6e7; f["h"] = 3.6e9
    if (!(unit in f)) { print "nan"; exit }
    printf "%.1f\n", n * f[unit]
  }'
}

# Prints "rps p50_us p99_us non2xx socket_errors" from one wrk --latency report.
parse_wrk() {
  local report=$1 rps p50 p99 non2xx errors
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$report")
  p50=$(awk '$1 == "50%" { print $2; exit }' "$report")
  p99=$(awk '$1 == "99%" { print $2; exit }' "$report")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$report")
  errors=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$report")
  if [[ -z $rps || -z $p50 || -z $p99 ]]; then
    log "could not parse wrk's report:"
    cat "$report" >&2
    exit 1
  fi
  echo "$rps $(to_us "$p50") $(to_us "$p99") ${non2xx:-0} ${errors:-0}"
}

run_wrk() {
  local workload=$1 run=$2 url=$SERVER_URL script=()
  case "$workload" in
    ceiling) url+="/" ;;
    durin-uniform) script=(-s "$UNIFORM_LUA") ;;
    durin-hot) url+="/ratelimit/hot" ;;
    durin-read) script=(-s "$UNIFORM_LUA") ;;
  esac
  local prefix=/ratelimit/k
  [[ $workload == durin-read ]] && prefix=/counter/k
  local report="$TMP/$workload.$run.wrk"
  WRK_PATH_PREFIX=$prefix "${wrk_prefix[@]}" wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "$DURATION" --latency \
    "${script[@]}" "$url" >"$report"
  parse_wrk "$report"
}

# --- the runs -----------------------------------------------------------------

RESULTS="$TMP/results.tsv"
: >"$RESULTS"
for ((run = 1; run <= RUNS; run++)); do
  for workload in $WORKLOADS; do
    start_workload_server "$workload" "$run"
    result=$(run_wrk "$workload" "$run")
    read -r rps p50 p99 non2xx errors <<<"$result"
    stop_server
    rm -rf "$TMP/data-$workload-$run"
    if ((errors > 0)); then
      log "run $run/$RUNS $workload: $(grep 'Socket errors:' "$TMP/$workload.$run.wrk" | sed 's/^ *//')"
    fi
    if [[ -n ${REPORTS_DIR:-} ]]; then
      mkdir -p "$REPORTS_DIR"
      cp "$TMP/$workload.$run.wrk" "$REPORTS_DIR/"
      server=${workload%%-*}
      cp "$TMP/$server.stderr" "$REPORTS_DIR/$workload.$run.stderr"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$rps" "$p50" "$p99" "$non2xx" "$errors" >>"$RESULTS"
    log "run $run/$RUNS $workload: $rps req/s, p50 ${p50}us, p99 ${p99}us, non-2xx $non2xx, socket errors $errors"
  done
done

# --- the table ----------------------------------------------------------------

# The median of column $2 over the rows of workload $1.
median() {
  awk -F'\t' -v w="$1" -v c="$2" '$1 == w { print $c }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "nan"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}
total() { awk -F'\t' -v w="$1" -v c="$2" '$1 == w { s += $c } END { print s + 0 }' "$RESULTS"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a == a + 0) printf "%.2f", a / b; else print "-" }'; }

has_ceiling=false
[[ " $WORKLOADS " == *" ceiling "* ]] && has_ceiling=true
if $has_ceiling; then
  ceiling_rps=$(median ceiling 2)
  ceiling_p50=$(median ceiling 3)
  ceiling_p99=$(median ceiling 4)
fi

table() {
  echo "## wrk: durin beside the ceiling server"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: nproc $(nproc), kernel $(uname -r), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "- servers: --cores $CORES, pinned to CPUs $server_cpus; wrk $(wrk --version 2>&1 | awk 'NR == 1 { print $2 }') -t $WRK_THREADS -c $CONNECTIONS -d $DURATION, $wrk_placement"
  echo "- durin's data directory on $(df -P "$TMP" | awk 'NR == 2 { print $1 }') ($(stat -f -c %T "$TMP"))"
  echo "- median of $RUNS runs, each against a freshly started server with a fresh data directory; ratios are to the ceiling's median"
  echo
  echo "| workload | req/s | × ceiling | p50 µs | × ceiling | p99 µs | × ceiling | non-2xx | socket errors |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  local workload rps p50 p99
  for workload in $WORKLOADS; do
    rps=$(median "$workload" 2)
    p50=$(median "$workload" 3)
    p99=$(median "$workload" 4)
    local r_rps="-" r_p50="-" r_p99="-"
    if $has_ceiling; then
      r_rps=$(ratio "$rps" "$ceiling_rps")
      r_p50=$(ratio "$p50" "$ceiling_p50")
      r_p99=$(ratio "$p99" "$ceiling_p99")
    fi
    printf '| %s | %.0f | %s | %.0f | %s | %.0f | %s | %s | %s |\n' "$workload" "$rps" "$r_rps" \
      "$p50" "$r_p50" "$p99" "$r_p99" "$(total "$workload" 5)" "$(total "$workload" 6)"
  done
  echo
  echo "Workloads: ceiling \`GET /\`; durin-uniform \`GET /ratelimit/k<N>\` over 10,000 uniform keys (bench/wrk/uniform_keys.lua); durin-hot \`GET /ratelimit/hot\`. Limit config: bench/ratelimit-bench.toml. Non-2xx and socket errors are totals over all runs."
}

if [[ -n $OUT ]]; then
  table | tee "$OUT"
else
  table
fi
