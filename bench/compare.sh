#!/usr/bin/env bash
# Runs durin and its peers on the same workloads in one session and writes
# the tables and charts for PERF.md.
#
# Systems (--systems, comma-separated; default all):
#   durin           target/release/durin serve --no-rpc, default config
#                   (ratelimit: fixed window, 100 per 60 s)
#   workerd         the seed's ChatRoom and RateLimiter (and a Counter) in
#                   JavaScript on workerd, storage on local disk (SQLite);
#                   bench/compare/workerd/, npm package pinned in
#                   bench/compare/package.json
#   redis-always    redis-server, appendonly yes, appendfsync always, the
#                   fixed-window limiter as a Lua script, driven by
#                   redis-benchmark (EVALSHA / INCR, closed loop)
#   redis-everysec  the same with appendfsync everysec
#   ceiling         bench's minimal io_uring HTTP server (a fixed 200 for
#                   anything): this machine's upper bound for HTTP
# Workloads (--workloads, comma-separated; default all):
#   rl-uniform  GET /ratelimit/{key}, 10,000 keys, uniform
#   rl-zipf     GET /ratelimit/{key}, 10,000 keys, Zipf exponent 1.1
#   rl-hot      GET /ratelimit/hot
#   counter     POST /counter/{key}/increment, 10,000 keys, uniform
#   chat-10     WebSocket chat, rooms of 10 (loadgen ws)
#   chat-100    WebSocket chat, rooms of 100 (loadgen ws)
# A system that does not run a workload (ceiling and redis have no chat,
# redis-benchmark draws no Zipf keys) shows as "n/a" in that table; a peer
# that cannot be installed shows as "not installed: <why>".
#
# Before any run, each durable system must keep a counter across a restart
# (two increments, SIGTERM, a start on the same data directory, a third
# increment that answers 3); one that does not is reported and not run.
# Every run gets a freshly started server with an empty data directory. For
# each repetition, each workload, the systems run one after another, the
# first of them rotating from one repetition to the next, so that drift on
# the machine hits every system alike. Tables give medians over the
# repetitions; "durin ÷ system" is the median over repetitions of durin's
# throughput divided by the system's in the same repetition.
#
# Usage: bench/compare.sh [options]
#   --reps N             repetitions (3; at least 1)
#   --duration D         per run, as loadgen takes it: 10s, 500ms, 1m (10s)
#   --workloads LIST     subset of the workloads above (all)
#   --systems LIST       subset of the systems above (all)
#   --connections N      HTTP and redis connections (64)
#   --chat-clients N     clients per chat run, split into rooms (1000)
#   --chat-senders S     all or one (all)
#   --cores N            durin's and ceiling's shards / threads [default:
#                        half the CPUs with 4 or more, else all]
#   --out-dir DIR        where results go (bench/results)
#   --data-root DIR      where data directories go ($TMPDIR or /tmp); put it
#                        on the disk you mean to measure: a tmpfs makes
#                        fsync free
#   --no-build           use the binaries already in the target directory
#   --no-install         never install a missing peer; report it instead
#   -h, --help           this text
# Environment: CARGO_TARGET_DIR (target) where the binaries are built.
# Output: bench/results/compare-<date>.md (tables), .jsonl (one line per
# run, loadgen's or redis-benchmark's summary inside), and -throughput.svg,
# -latency.svg (charts by bench/compare/plot.py). Before and after the
# runs, bench's sync_probe measures a 4 KiB write + fdatasync on the data
# directories' disk; the tables' header gives it beside the durable figures.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COMPARE="$ROOT/bench/compare"
ALL_SYSTEMS="durin,workerd,redis-always,redis-everysec,ceiling"
ALL_WORKLOADS="rl-uniform,rl-zipf,rl-hot,counter,chat-10,chat-100"
REPS=3
DURATION=10s
WORKLOADS=$ALL_WORKLOADS
SYSTEMS=$ALL_SYSTEMS
CONNECTIONS=64
CHAT_CLIENTS=1000
CHAT_SENDERS=all
CORES=""
OUT_DIR="$ROOT/bench/results"
DATA_ROOT=${TMPDIR:-/tmp}
BUILD=true
INSTALL=true
# How long a server may take to be ready, and to exit after SIGTERM.
READY_TIMEOUT_S=60
STOP_TIMEOUT_S=10
# A loadgen or redis-benchmark run that outlives its duration by this much
# is stopped (a chat run's connect phase is part of the margin).
CLIENT_MARGIN_S=90
COMMAND_LINE="bench/compare.sh $*"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
need_value() { [[ $# -ge 2 && -n $2 ]] || { echo "$1 needs a value" >&2; exit 2; }; }
while (($#)); do
  case "$1" in
    --reps) need_value "$@"; REPS=$2; shift 2 ;;
    --duration) need_value "$@"; DURATION=$2; shift 2 ;;
    --workloads) need_value "$@"; WORKLOADS=$2; shift 2 ;;
    --systems) need_value "$@"; SYSTEMS=$2; shift 2 ;;
    --connections) need_value "$@"; CONNECTIONS=$2; shift 2 ;;
    --chat-clients) need_value "$@"; CHAT_CLIENTS=$2; shift 2 ;;
    --chat-senders) need_value "$@"; CHAT_SENDERS=$2; shift 2 ;;
    --cores) need_value "$@"; CORES=$2; shift 2 ;;
    --out-dir) need_value "$@"; OUT_DIR=$2; shift 2 ;;
    --data-root) need_value "$@"; DATA_ROOT=$2; shift 2 ;;
    --no-build) BUILD=false; shift ;;
    --no-install) INSTALL=false; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done

log() { echo "compare: $*" >&2; }
die() { log "$*"; exit 2; }

for var in REPS CONNECTIONS CHAT_CLIENTS; do
  [[ ${!var} =~ ^[1-9][0-9]*$ ]] || die "--${var,,} must be a positive integer, not '${!var}'"
done
[[ -z $CORES || $CORES =~ ^[1-9][0-9]*$ ]] || die "--cores must be a positive integer, not '$CORES'"
[[ $CHAT_SENDERS == all || $CHAT_SENDERS == one ]] || die "--chat-senders must be all or one"
# The duration in seconds, for redis-benchmark's request count and the
# client's time limit; loadgen checks the text itself.
DURATION_S=$(python3 - "$DURATION" <<'EOF'
import re, sys
m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", sys.argv[1])
if not m or float(m.group(1)) <= 0:
    sys.exit(1)
print(float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)])
EOF
) || die "--duration must look like 10s, 500ms or 1m, not '$DURATION'"
IFS=',' read -ra SYSTEM_LIST <<<"$SYSTEMS"
IFS=',' read -ra WORKLOAD_LIST <<<"$WORKLOADS"
((${#SYSTEM_LIST[@]})) || die "--systems is empty"
((${#WORKLOAD_LIST[@]})) || die "--workloads is empty"
for system in "${SYSTEM_LIST[@]}"; do
  [[ ,$ALL_SYSTEMS, == *,$system,* ]] || die "unknown system '$system' (known: $ALL_SYSTEMS)"
done
for workload in "${WORKLOAD_LIST[@]}"; do
  [[ ,$ALL_WORKLOADS, == *,$workload,* ]] || die "unknown workload '$workload' (known: $ALL_WORKLOADS)"
done
has_system() { [[ ,$SYSTEMS, == *,$1,* ]]; }
has_chat() { [[ ,$WORKLOADS, == *,chat-* ]]; }

STAMP=$(date -u +%Y-%m-%d-%H%M%S)
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
JSONL="$OUT_DIR/compare-$STAMP.jsonl"
MARKDOWN="$OUT_DIR/compare-$STAMP.md"
mkdir -p "$DATA_ROOT"
TMP=$(mktemp -d "$DATA_ROOT/durin-compare.XXXXXX")
SERVER_PID=""

# shellcheck source=bench/compare/lib.sh
source "$COMPARE/lib.sh"

trap 'stop_server; rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

install_peers
build_binaries
place_cpus
check_all_persist
write_meta >"$JSONL"
probe_sync before
run_all
probe_sync after
python3 "$COMPARE/results.py" report "$JSONL" "$MARKDOWN"
python3 "$COMPARE/plot.py" "$JSONL" "$OUT_DIR/compare-$STAMP"
log "wrote $MARKDOWN"
log "wrote $JSONL"
log "wrote $OUT_DIR/compare-$STAMP-throughput.svg and -latency.svg"
