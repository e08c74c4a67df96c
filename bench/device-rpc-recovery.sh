#!/usr/bin/env bash
# HTTP vs binary RPC at 8 shards (clients on CPUs 8-15), then
# recovery time with 10 M keys. Needs a 16-core machine. Expects in its
# folder: durin, ceiling, loadgen, fill_store (release builds), wrk (and
# its libraries in lib/), uniform_keys.lua, ratelimit-bench.toml.
set -u
D=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH=$D/lib
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; RES=$OUT/results2.tsv; : > "$RES"
{ echo "nproc $(nproc)"; uname -r; df -hT /tmp | tail -1; date -u; } > "$OUT/machine2.txt"
start() { # kind -> PORT RPC PID
  rm -rf /tmp/dd; : > /tmp/srv.out
  if [[ $1 == ceiling ]]; then
    "$D/ceiling" --listen 127.0.0.1:0 --cores 8 --cpus 0-7 > /tmp/srv.out 2>>"$OUT/server.err" &
  else
    "$D/durin" serve --listen 127.0.0.1:0 --rpc-listen 127.0.0.1:0 --data-dir /tmp/dd --cores 8 --cpus 0-7 --config "$D/ratelimit-bench.toml" > /tmp/srv.out 2>>"$OUT/server.err" &
  fi
  PID=$!
  for _ in $(seq 200); do grep -q 'listening on http' /tmp/srv.out && break; sleep 0.05; done
  PORT=$(grep 'listening on http' /tmp/srv.out | grep -o '[0-9]*$')
  RPC=$(grep 'rpc listening on' /tmp/srv.out | sed 's/.*on \([0-9.:]*\),.*/\1/')
}
stop() { kill -9 "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
lg() { grep -o "\"$1\": *[0-9.]*" "$OUT/lg.json" | head -1 | grep -o '[0-9.]*$'; }
one() {
  local w=$1 rep=$2 rps p50 p99 err=""
  case $w in ceiling) start ceiling ;; *) start durin ;; esac
  case $w in
    ceiling|wrk-uniform)
      local url=http://127.0.0.1:$PORT/ script=()
      [[ $w == wrk-uniform ]] && { script=(-s "$D/uniform_keys.lua"); export WRK_PATH_PREFIX=/ratelimit/k; }
      taskset -c 8-15 "$D/wrk" -t8 -c256 -d5s --latency "${script[@]}" "$url" > "$OUT/w.txt" 2>&1
      rps=$(awk '/Requests\/sec/ {print $2}' "$OUT/w.txt"); p50=$(awk '$1=="50%" {print $2}' "$OUT/w.txt"); p99=$(awk '$1=="99%" {print $2}' "$OUT/w.txt")
      err=$(grep -E "Socket errors|Non-2xx" "$OUT/w.txt" | tr '\n' ' ') ;;
    *)
      local args=()
      case $w in
        lg-http) args=(http --url "http://127.0.0.1:$PORT/ratelimit/{key}") ;;
        lg-rpc) args=(rpc --addr "$RPC") ;;
        lg-rpc-aware) args=(rpc --addr "$RPC" --shard-aware) ;;
        lg-rpc-aware-p8) args=(rpc --addr "$RPC" --shard-aware --pipeline 8) ;;
      esac
      "$D/loadgen" "${args[@]}" --keys uniform:10000 -c 256 -d 5s --threads 8 --cpus 8-15 --json > "$OUT/lg.json" 2>>"$OUT/lg.err"
      rps=$(lg requests_per_sec); p50=$(lg p50_us)us; p99=$(lg p99_us)us; err="errors=$(lg errors)" ;;
  esac
  printf '%s\t8\t%s\t%s\t%s\t%s\t%s\n' "$w" "$rep" "$rps" "$p50" "$p99" "$err" | tee -a "$RES"
  stop
}
for rep in 1 2 3; do
  for w in ceiling wrk-uniform lg-http lg-rpc lg-rpc-aware lg-rpc-aware-p8; do one $w $rep; done
done
# Recovery with 10 M keys over 8 partitions.
rm -rf /tmp/rec
t0=$(date +%s.%N)
"$D/fill_store" --data-dir /tmp/rec --keys 10000000 --shards 8 2>"$OUT/fill.err"
t1=$(date +%s.%N)
echo "fill 10M: $(echo "$t1 - $t0" | bc 2>/dev/null || echo "$t0 $t1") s; $(du -sh /tmp/rec | cut -f1); log $(du -sh /tmp/rec/wal | cut -f1)" | tee -a "$RES"
: > /tmp/srv.out
s=$(date +%s%N)
DURIN_LOG=info "$D/durin" serve --listen 127.0.0.1:0 --rpc-listen 127.0.0.1:0 --data-dir /tmp/rec --cores 8 --cpus 0-7 > /tmp/srv.out 2>"$OUT/rec.err" &
PID=$!
until grep -q 'listening on http' /tmp/srv.out; do sleep 0.005; done
e=$(date +%s%N)
echo "recovery 10M keys, 8 shards: start to ready $(( (e - s) / 1000000 )) ms; $(grep -E 'opened|replayed' "$OUT/rec.err" | tr '\n' ' ')" | tee -a "$RES"
stop
