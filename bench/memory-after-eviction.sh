#!/usr/bin/env bash
# Server memory after many objects were touched once and then left memory:
# a fresh durin (2 shards), `loadgen http --keys seq:N` sending one
# `POST /counter/k<i>/increment` to each of N counters (each object created
# once, its value written once), then the server's RSS sampled every
# SAMPLE_SECS until every object was evicted and RSS stayed within 1% for
# PLATEAU_SECS (or MAX_SECS passed).
#
#   bench/memory-after-eviction.sh [OBJECTS]     # default: 1000000
#
# Environment: DURIN_BIN and LOADGEN_BIN (default: the release builds, built
# first), IDLE_MS (the counters' idle timeout, default 10000), CONFIG_EXTRA
# (more `[server]` lines, e.g. to try other memory settings), SAMPLE_SECS (2),
# PLATEAU_SECS (45: longer than the default storage_idle_flush_ms), MAX_SECS
# (300).
#
# Output: one line per sample, `seconds rss_mib objects_live evicted_total
# table_slots memtable_mib cache_mib` (the last three from /metrics, summed
# over the shards: the object tables' capacity, fjall's unflushed memtables,
# its block caches; a server without them prints 0), then a summary line. The phases: `base` (fresh server), `touched` (right
# after the load), `plateau` (the last sample).
set -euo pipefail
cd "$(dirname "$0")/.."
objects=${1:-1000000}
idle_ms=${IDLE_MS:-10000}
sample_secs=${SAMPLE_SECS:-2}
plateau_secs=${PLATEAU_SECS:-45}
max_secs=${MAX_SECS:-300}
if [ -z "${DURIN_BIN:-}" ] || [ -z "${LOADGEN_BIN:-}" ]; then
    cargo build --release -q -p durin -p loadgen
fi
durin=${DURIN_BIN:-target/release/durin}
loadgen=${LOADGEN_BIN:-target/release/loadgen}
dir=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
{
    printf '[server]\n%b\n' "${CONFIG_EXTRA:-}"
    printf '[classes.counter]\nidle_timeout_ms = %s\n' "$idle_ms"
} > "$dir/durin.toml"

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
# GET over bash's /dev/tcp, so the script needs no HTTP client.
http_get() {
    exec 3<> "/dev/tcp/${addr%:*}/${addr##*:}"
    printf 'GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' "$1" >&3
    cat <&3
    exec 3<&-
}
metric_sum() {
    http_get /metrics | awk -v m="durin_$1{" 'index($0, m) == 1 { s += $2 } END { print s + 0 }'
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

"$durin" serve --listen 127.0.0.1:0 --no-rpc --data-dir "$dir/data" \
    --cores 2 --no-pin --config "$dir/durin.toml" > "$dir/out" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q "durin listening" "$dir/out" && break; sleep 0.1; done
addr=$(sed -n 's|durin listening on http://||p' "$dir/out")
http_get /healthz > /dev/null
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $(uname -r), $objects objects, idle_timeout_ms $idle_ms"
echo "# config: $(tr '\n' ' ' < "$dir/durin.toml")"
base_kib=$(rss_kib "$server")
echo "base $((base_kib / 1024)) MiB"

# Closed loop over 64 connections; seq:N hands out k0..k<N-1> once each, so
# the run stops after N requests: the duration is only an upper bound.
start=$(date +%s)
"$loadgen" http --url "http://$addr/counter/{key}/increment" --method POST \
    --keys "seq:$objects" --connections 64 --threads 1 --duration 600s \
    --json > "$dir/load.json" 2>&1 &
load=$!
while kill -0 "$load" 2>/dev/null; do
    [ "$(metric_sum objects_created_total)" -ge "$objects" ] && break
    sleep 0.5
done
kill "$load" 2>/dev/null || true
wait "$load" 2>/dev/null || true
touched_kib=$(rss_kib "$server")
echo "touched $(metric_sum objects_created_total) objects in $(($(date +%s) - start)) s: $((touched_kib / 1024)) MiB"

echo "# seconds rss_mib objects_live evicted_total table_slots memtable_mib cache_mib"
t0=$(date +%s)
stable_since=$t0
last_kib=$touched_kib
while :; do
    sleep "$sample_secs"
    now=$(date +%s)
    kib=$(rss_kib "$server")
    live=$(metric_sum objects_live)
    echo "$((now - t0)) $(mib $((kib * 1024))) $live $(metric_sum objects_evicted_total)" \
        "$(metric_sum objects_capacity) $(mib "$(metric_sum storage_memtable_bytes)")" \
        "$(mib "$(metric_sum storage_cache_bytes)")"
    # A plateau: every object gone and RSS within 1% of the sample that
    # started the current stretch.
    if [ "$live" -ne 0 ] || [ $((kib * 100)) -gt $((last_kib * 101)) ] \
        || [ $((kib * 101)) -lt $((last_kib * 100)) ]; then
        stable_since=$now
        last_kib=$kib
    fi
    [ $((now - stable_since)) -ge "$plateau_secs" ] && break
    [ $((now - t0)) -ge "$max_secs" ] && { echo "# no plateau within $max_secs s"; break; }
done
echo "summary: base $((base_kib / 1024)) MiB, touched $((touched_kib / 1024)) MiB, plateau $((kib / 1024)) MiB ($objects objects)"
