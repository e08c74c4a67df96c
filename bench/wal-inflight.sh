#!/usr/bin/env bash
# Durable rate-limit checks with the log keeping 1, 2 or more groups in
# flight per shard (`[server] wal_groups_in_flight`), alternating, on the
# same binary: loadgen HTTP, closed loop, 10,000 keys uniform, every check
# admitted and written (bench/ratelimit-bench.toml).
#
#   bench/wal-inflight.sh [ROUNDS] [SETTINGS...]    # default: 3 rounds of 1 2
#
# Env: CORES (server shards, default 2), CONNECTIONS (64), DURATION (10s),
# LOADGEN_ARGS (extra loadgen flags, e.g. `--cpus 8-15 --threads 8`),
# DURIN / LOADGEN (binaries; default target/release, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
settings=("${@:-1 2}")
[ $# -gt 0 ] || settings=(1 2)
CORES=${CORES:-2}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-10s}
DURIN=${DURIN:-target/release/durin}
LOADGEN=${LOADGEN:-target/release/loadgen}
[ -x "$DURIN" ] && [ -x "$LOADGEN" ] || cargo build --release -q -p durin -p loadgen
dir=$(mktemp -d "${DATA_ROOT:-$PWD/target}/wal-inflight.XXXXXX")
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $CORES shards, $CONNECTIONS connections, $DURATION"
printf 'round\tin_flight\treq_per_s\tp50_us\tp99_us\n'
for round in $(seq "$rounds"); do
    for n in "${settings[@]}"; do
        rm -rf "$dir/data"
        { cat bench/ratelimit-bench.toml; printf '\n[server]\nwal_groups_in_flight = %s\n' "$n"; } > "$dir/durin.toml"
        "$DURIN" serve --listen 127.0.0.1:0 --no-rpc --data-dir "$dir/data" \
            --cores "$CORES" --config "$dir/durin.toml" > "$dir/out" 2>&1 &
        server=$!
        for _ in $(seq 100); do grep -q "durin listening" "$dir/out" && break; sleep 0.1; done
        addr=$(sed -n 's|durin listening on http://||p' "$dir/out")
        json=$("$LOADGEN" http --url "http://$addr/ratelimit/{key}" --keys uniform:10000 \
            -c "$CONNECTIONS" -d "$DURATION" ${LOADGEN_ARGS:-} --json || true)
        kill "$server"; wait "$server" 2>/dev/null || true
        server=""
        python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print("\t".join(str(x) for x in [sys.argv[2], sys.argv[3], round(j["requests_per_sec"]), round(j["p50_us"]), round(j["p99_us"])]))' \
            "$json" "$round" "$n"
    done
done
