#!/usr/bin/env bash
# Chat fan-out on durin: loadgen ws against the chat class, rooms of 10 and
# 100 clients, one sender per room and every client sending, closed loop.
# Each configuration runs REPS times against a fresh server; the table has
# medians (of deliveries per second; latencies from that median run).
#
#   bench/chat-fanout.sh            # REPS=3 DURATION=10s
#
# Environment: REPS (3), DURATION (10s), SERVER_CPUS / LOAD_CPUS (on a
# machine with N CPUs: the first half for the server, the rest for loadgen;
# on 2 CPUs: CPU 0 and CPU 1), CONFIGS ("10x10:one 10x10:all 1x100:one
# 1x100:all 10x100:one": rooms x clients : senders), DURIN_BIN (the server
# binary, target/release/durin; another build's to compare two).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
DURATION=${DURATION:-10s}
CONFIGS=${CONFIGS:-10x10:one 10x10:all 1x100:one 1x100:all 10x100:one}
DURIN_BIN=${DURIN_BIN:-target/release/durin}
n=$(nproc)
half=$(( n / 2 ))
SERVER_CPUS=${SERVER_CPUS:-$( [ "$half" -gt 1 ] && echo "0-$((half - 1))" || echo 0 )}
LOAD_CPUS=${LOAD_CPUS:-$( [ "$n" -gt 2 ] && echo "$half-$((n - 1))" || echo 1 )}
shards=$(( half > 1 ? half : 1 ))
load_threads=$(( n - half > 1 ? n - half : 1 ))
cargo build --release -q -p durin -p loadgen
dir=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill $server 2>/dev/null; rm -rf "$dir"' EXIT

start_server() {
    rm -rf "$dir/data"
    taskset -c "$SERVER_CPUS" "$DURIN_BIN" serve --listen 127.0.0.1:0 --no-rpc \
        --data-dir "$dir/data" --cores "$shards" --no-pin > "$dir/out" 2>&1 &
    server=$!
    for _ in $(seq 200); do grep -q "durin listening" "$dir/out" && break; sleep 0.05; done
    addr=$(sed -n 's|durin listening on http://||p' "$dir/out")
}

echo "# chat fan-out, $(date -u +%FT%TZ), $n CPUs ($(uname -r)), server CPUs $SERVER_CPUS ($shards shards), loadgen CPUs $LOAD_CPUS ($load_threads threads), $DURATION x $REPS"
echo
echo "| rooms x clients | senders | messages/s | deliveries/s | p50 | p99 | errors | server CPU |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for config in $CONFIGS; do
    shape=${config%%:*}; senders=${config##*:}
    rooms=${shape%%x*}; clients=${shape##*x}
    results=()
    for rep in $(seq "$REPS"); do
        start_server
        ticks_before=$(awk '{print $14 + $15}' "/proc/$server/stat")
        json=$(target/release/loadgen ws --url "ws://$addr/chat/{room}/websocket" \
            --rooms "$rooms" --clients-per-room "$clients" --senders "$senders" \
            --duration "$DURATION" --threads "$load_threads" --cpus "$LOAD_CPUS" --json 2>/dev/null)
        ticks_after=$(awk '{print $14 + $15}' "/proc/$server/stat")
        kill "$server"; wait "$server" 2>/dev/null || true; server=""
        results+=("$(python3 -c '
import json, sys
d = json.loads(sys.argv[1]); cpu = (int(sys.argv[3]) - int(sys.argv[2])) / 100
print(d["deliveries_per_sec"], d["messages_per_sec"], d["p50_us"], d["p99_us"], d["errors"], cpu / d["elapsed_s"])
' "$json" "$ticks_before" "$ticks_after")")
    done
    printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (REPS + 1) / 2 ))p" | \
        python3 -c '
import sys
d, m, p50, p99, e, cpu = sys.stdin.read().split()
ms = lambda us: f"{float(us) / 1000:.2f} ms"
print(f"| {sys.argv[1]} | {sys.argv[2]} | {float(m):,.0f} | {float(d):,.0f} | {ms(p50)} | {ms(p99)} | {e} | {float(cpu):.0%} |")
' "$rooms x $clients" "$senders"
done
