#!/usr/bin/env bash
# Server memory per idle WebSocket: for each connection count, a fresh durin
# (2 shards) and `ws_idle` opening that many chat sockets (rooms of 10),
# waiting until the rooms hibernate, and reading the server's RSS growth.
#
#   bench/ws-idle.sh [COUNTS...]        # default: 5000 10000 19000
#
# Both processes need one descriptor per connection: the counts must stay
# under `ulimit -Hn` (raise it where you can for 100,000).
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("${@:-5000 10000 19000}")
[ $# -gt 0 ] || counts=(5000 10000 19000)
cargo build --release -q -p durin -p bench --bin durin --bin ws_idle
dir=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$dir"' EXIT
printf '[server]\nconnections_max_per_shard = 1000000\n' > "$dir/durin.toml"
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $(uname -r), ulimit -Hn $(ulimit -Hn)"
for n in "${counts[@]}"; do
    rm -rf "$dir/data"
    target/release/durin serve --listen 127.0.0.1:0 --no-rpc --data-dir "$dir/data" \
        --cores 2 --no-pin --config "$dir/durin.toml" > "$dir/out" 2>&1 &
    server=$!
    for _ in $(seq 100); do grep -q "durin listening" "$dir/out" && break; sleep 0.1; done
    addr=$(sed -n 's|durin listening on http://||p' "$dir/out")
    curl -s "http://$addr/healthz" > /dev/null
    target/release/ws_idle --addr "$addr" --pid "$server" --connections "$n" \
        --room-size 10 --settle-secs 13 2>/dev/null
    kill "$server"; wait "$server" 2>/dev/null || true
done
