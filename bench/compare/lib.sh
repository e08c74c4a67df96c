# shellcheck shell=bash
# bench/compare.sh's parts, sourced by it: installing peers, placing CPUs,
# starting and stopping each system's server, driving it, recording runs.
# Expects compare.sh's settings (ROOT, COMPARE, TMP, JSONL, SYSTEMS, ...).

# Why a system cannot run at all ("not installed: ..."), by system.
declare -A PEER_STATUS=()
# Why chat workloads cannot run (no `loadgen ws`), empty when they can.
CHAT_STATUS=""
# redis-benchmark takes a request count, not a duration: the rate measured
# in a calibration run, by "system workload", turns the duration into one.
declare -A REDIS_RATE=()
# Requests in a calibration run.
REDIS_CALIBRATION_REQUESTS=20000
# Fewest requests in a measured redis run.
REDIS_REQUESTS_MIN=1000
# The limiter's settings, durin's defaults: a fixed window of 100 per 60 s.
LIMIT=100
WINDOW_MS=60000
# Keys of the uniform and Zipf workloads.
KEYS=10000

# --- peers --------------------------------------------------------------------

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi
}

install_workerd() {
  WORKERD="$COMPARE/node_modules/.bin/workerd"
  "$WORKERD" --version >/dev/null 2>&1 && return 0
  if ! $INSTALL; then
    PEER_STATUS[workerd]="not installed: no bench/compare/node_modules/.bin/workerd and --no-install given"
    return 0
  fi
  if ! command -v npm >/dev/null; then
    PEER_STATUS[workerd]="not installed: npm is missing (apt-get install npm)"
    return 0
  fi
  log "installing workerd (npm ci in bench/compare)"
  if ! npm ci --prefix "$COMPARE" --no-audit --no-fund >"$TMP/npm.log" 2>&1; then
    PEER_STATUS[workerd]="not installed: npm ci failed: $(grep -m1 -i 'err' "$TMP/npm.log" || tail -n1 "$TMP/npm.log")"
    return 0
  fi
  if ! "$WORKERD" --version >"$TMP/workerd-version.log" 2>&1; then
    PEER_STATUS[workerd]="not installed: workerd does not run here: $(tail -n1 "$TMP/workerd-version.log")"
  fi
}

install_redis() {
  local tool missing=()
  for tool in redis-server redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  ((${#missing[@]})) || return 0
  local why=""
  if ! $INSTALL; then
    why="${missing[*]} missing and --no-install given"
  else
    log "installing redis-server and redis-tools (apt-get)"
    if ! { as_root apt-get update -qq && as_root apt-get install -y -qq redis-server redis-tools; } \
      >"$TMP/apt.log" 2>&1; then
      why="apt-get install redis-server redis-tools failed: $(tail -n1 "$TMP/apt.log")"
    fi
  fi
  for tool in redis-server redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null || { why=${why:-"$tool missing after apt-get install"}; break; }
  done
  if [[ -n $why ]]; then
    PEER_STATUS[redis-always]="not installed: $why"
    PEER_STATUS[redis-everysec]="not installed: $why"
  fi
}

install_peers() {
  has_system workerd && install_workerd
  if has_system redis-always || has_system redis-everysec; then install_redis; fi
  local system
  for system in "${!PEER_STATUS[@]}"; do log "$system: ${PEER_STATUS[$system]}"; done
}

# --- binaries -----------------------------------------------------------------

build_binaries() {
  local target=${CARGO_TARGET_DIR:-$ROOT/target}
  [[ $target == /* ]] || target="$ROOT/$target"
  DURIN="$target/release/durin"
  LOADGEN="$target/release/loadgen"
  CEILING="$target/release/ceiling"
  SYNC_PROBE="$target/release/sync_probe"
  if $BUILD; then
    log "building durin, loadgen and ceiling (cargo build --release)"
    (cd "$ROOT" && cargo build --release -p durin -p loadgen -p bench) >&2
  fi
  [[ -x $LOADGEN ]] || die "no loadgen at $LOADGEN (build it, or drop --no-build)"
  if has_system durin && [[ ! -x $DURIN ]]; then
    die "no durin at $DURIN (build it, or drop --no-build)"
  fi
  if has_system ceiling && [[ ! -x $CEILING ]]; then
    PEER_STATUS[ceiling]="not installed: no ceiling at $CEILING"
    log "ceiling: ${PEER_STATUS[ceiling]}"
  fi
  if has_chat && ! "$LOADGEN" ws --help >"$TMP/ws-help.log" 2>&1; then
    CHAT_STATUS="loadgen ws unavailable: $(head -n1 "$TMP/ws-help.log")"
    log "chat workloads: $CHAT_STATUS"
  fi
}

# --- CPU placement ------------------------------------------------------------

# Expands a CPU list such as "0,2-5" into one CPU per line.
expand_cpus() {
  local part parts
  IFS=',' read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
  done
}

# With 4 or more CPUs the servers get the first --cores of them and the
# load generators the rest, each pinned with taskset; with fewer, everything
# shares every CPU (and the servers still run --cores threads).
place_cpus() {
  local allowed
  mapfile -t allowed < <(expand_cpus "$(taskset -cp $$ | sed 's/.*: //')")
  local count=${#allowed[@]}
  SERVER_PREFIX=()
  CLIENT_PREFIX=()
  PIN_ARGS=()
  CLIENT_PIN_ARGS=()
  if ((count >= 4)); then
    CORES=${CORES:-$((count / 2))}
    ((CORES < count)) || die "--cores $CORES leaves no CPU for the load generator ($count CPUs)"
    SERVER_CPUS=$(IFS=','; echo "${allowed[*]:0:CORES}")
    CLIENT_CPUS=$(IFS=','; echo "${allowed[*]:CORES}")
    CLIENT_THREADS=$((count - CORES))
    SERVER_PREFIX=(taskset -c "$SERVER_CPUS")
    CLIENT_PREFIX=(taskset -c "$CLIENT_CPUS")
    PIN_ARGS=(--cpus "$SERVER_CPUS")
    CLIENT_PIN_ARGS=(--cpus "$CLIENT_CPUS")
    PLACEMENT="servers on CPUs $SERVER_CPUS, load generators on CPUs $CLIENT_CPUS (taskset)"
  else
    CORES=${CORES:-$count}
    SERVER_CPUS="all"
    CLIENT_CPUS="all"
    CLIENT_THREADS=$(((count + 1) / 2))
    PLACEMENT="servers and load generators share all $count CPUs (fewer than 4: no separation)"
  fi
  log "$PLACEMENT; durin and ceiling --cores $CORES; $CLIENT_THREADS client threads"
}

# --- servers ------------------------------------------------------------------

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until "$@" succeeds, while SERVER_PID lives; fails with START_ERROR.
wait_ready() {
  local name=$1 err=$2 steps=0
  shift 2
  until "$@"; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      START_ERROR="$name exited before it was ready: $(tail -n3 "$err" | tr '\n' ' ')"
      SERVER_PID=""
      return 1
    fi
    if ((steps >= READY_TIMEOUT_S * 10)); then
      START_ERROR="$name was not ready within ${READY_TIMEOUT_S}s"
      return 1
    fi
    sleep 0.1
    steps=$((steps + 1))
  done
}

# Reads "<name> listening on http://HOST:PORT" from $1 into SERVER_ADDR.
read_listening_line() {
  SERVER_ADDR=$(sed -n "s|^$2 listening on http://\([^ /]*\).*|\1|p" "$1" | head -n1)
  [[ -n $SERVER_ADDR ]]
}

http_ok() { curl -fsS -o /dev/null --max-time 1 "http://$SERVER_ADDR/healthz" 2>/dev/null; }
redis_ok() { [[ $(redis-cli -p "${SERVER_ADDR#*:}" ping 2>/dev/null) == PONG ]]; }

# Starts system $1 with data directory $2; sets SERVER_PID and SERVER_ADDR,
# or START_ERROR and returns 1. Each start writes to files of its own: the
# shell truncates a reused file only once the new process runs, so the
# previous server's address could be read back.
START_COUNT=0
start_server() {
  local system=$1 data=$2
  START_COUNT=$((START_COUNT + 1))
  local out="$TMP/server.$START_COUNT.out" err="$TMP/server.$START_COUNT.err"
  : >"$out"
  SERVER_ERR=$err
  mkdir -p "$data"
  case "$system" in
    durin)
      "$DURIN" serve --listen 127.0.0.1:0 --no-rpc --data-dir "$data" --cores "$CORES" \
        "${PIN_ARGS[@]}" >"$out" 2>"$err" &
      SERVER_PID=$!
      wait_ready durin "$err" read_listening_line "$out" durin || return 1
      wait_ready durin "$err" http_ok
      ;;
    ceiling)
      "$CEILING" --listen 127.0.0.1:0 --cores "$CORES" "${PIN_ARGS[@]}" >"$out" 2>"$err" &
      SERVER_PID=$!
      wait_ready ceiling "$err" read_listening_line "$out" ceiling
      ;;
    workerd)
      SERVER_ADDR="127.0.0.1:$(free_port)"
      "${SERVER_PREFIX[@]}" "$WORKERD" serve "$COMPARE/workerd/config.capnp" \
        --socket-addr "http=$SERVER_ADDR" --directory-path "do-storage=$data" >"$out" 2>"$err" &
      SERVER_PID=$!
      wait_ready workerd "$err" http_ok
      ;;
    redis-always|redis-everysec)
      SERVER_ADDR="127.0.0.1:$(free_port)"
      "${SERVER_PREFIX[@]}" redis-server --port "${SERVER_ADDR#*:}" --bind 127.0.0.1 \
        --dir "$data" --appendonly yes --appendfsync "${system#redis-}" --save '' \
        --protected-mode no --daemonize no >"$out" 2>"$err" &
      SERVER_PID=$!
      wait_ready redis "$err" redis_ok || return 1
      load_redis_script
      ;;
  esac
}

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  local steps=0
  while kill -0 "$SERVER_PID" 2>/dev/null && ((steps < STOP_TIMEOUT_S * 10)); do
    sleep 0.1
    steps=$((steps + 1))
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# --- workloads ----------------------------------------------------------------

# Prints why system $1 does not run workload $2, nothing when it does.
unsupported() {
  local system=$1 workload=$2
  case "$system:$workload" in
    redis-*:rl-zipf) echo "n/a: redis-benchmark draws keys uniformly only" ;;
    redis-*:chat-*) echo "n/a: no WebSocket chat" ;;
    ceiling:chat-*) echo "n/a: no WebSocket chat" ;;
  esac
}

keys_of() {
  case "$1" in
    rl-uniform|counter) echo "uniform:$KEYS" ;;
    rl-zipf) echo "zipf:$KEYS:1.1" ;;
    rl-hot) echo "hot" ;;
  esac
}

# The fixed-window limiter of durin's ratelimit class, for redis: the first
# hit of a window sets its expiry, and a hit over the limit is refused
# (returns 0 and the count) without undoing its increment.
REDIS_LIMITER='local n = redis.call("INCR", KEYS[1])
if n == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end
if n > tonumber(ARGV[2]) then return {0, n} end
return {1, tonumber(ARGV[2]) - n}'

load_redis_script() {
  REDIS_SHA=$(redis-cli -p "${SERVER_ADDR#*:}" SCRIPT LOAD "$REDIS_LIMITER")
  [[ $REDIS_SHA =~ ^[0-9a-f]{40}$ ]] || { START_ERROR="SCRIPT LOAD answered '$REDIS_SHA'"; return 1; }
}

# The redis-benchmark command's arguments after the options, for workload $1.
redis_command() {
  case "$1" in
    rl-uniform) echo "-r $KEYS EVALSHA $REDIS_SHA 1 rl:__rand_int__ $WINDOW_MS $LIMIT" ;;
    rl-hot) echo "EVALSHA $REDIS_SHA 1 rl:hot $WINDOW_MS $LIMIT" ;;
    counter) echo "-r $KEYS INCR counter:__rand_int__" ;;
  esac
}

# Runs redis-benchmark with $2 requests for workload $1; CSV to $3.
redis_benchmark() {
  local workload=$1 requests=$2 out=$3 args
  read -ra args <<<"$(redis_command "$workload")"
  timeout -k 5 $((${DURATION_S%.*} + CLIENT_MARGIN_S)) "${CLIENT_PREFIX[@]}" redis-benchmark \
    -h 127.0.0.1 -p "${SERVER_ADDR#*:}" -c "$CONNECTIONS" -n "$requests" --threads "$CLIENT_THREADS" \
    --csv "${args[@]}" >"$out" 2>"$TMP/client.err"
}

# Measures redis's rate for system $1 and workload $2 on a server of its
# own, so that the measured runs start from an empty store.
calibrate_redis() {
  local system=$1 workload=$2
  [[ -n ${REDIS_RATE["$system $workload"]:-} ]] && return 0
  start_server "$system" "$TMP/calibrate" || return 1
  local rate=0
  if redis_benchmark "$workload" "$REDIS_CALIBRATION_REQUESTS" "$TMP/calibrate.csv"; then
    rate=$(awk -F'"' 'NR == 2 { print int($4) }' "$TMP/calibrate.csv")
  fi
  stop_server
  rm -rf "$TMP/calibrate"
  REDIS_RATE["$system $workload"]=${rate:-0}
  log "calibration $system $workload: ${rate:-0} requests/s"
}

# Runs the client of workload $1 against system $2 (already started); its
# summary goes to $TMP/client.out and the format's name to CLIENT_FORMAT.
run_client() {
  local workload=$1 system=$2 limit_s=$((${DURATION_S%.*} + CLIENT_MARGIN_S))
  local out="$TMP/client.out"
  case "$system:$workload" in
    redis-*)
      CLIENT_FORMAT=redis-benchmark
      local rate=${REDIS_RATE["$system $workload"]:-0}
      local requests
      requests=$(awk -v r="$rate" -v d="$DURATION_S" -v m="$REDIS_REQUESTS_MIN" \
        'BEGIN { n = int(r * d); print (n < m) ? m : n }')
      redis_benchmark "$workload" "$requests" "$out"
      ;;
    *:chat-*)
      CLIENT_FORMAT=loadgen-ws
      local size=${workload#chat-}
      local rooms=$(((CHAT_CLIENTS + size - 1) / size))
      timeout -k 5 "$limit_s" "$LOADGEN" ws --url "ws://$SERVER_ADDR/chat/{room}/websocket" \
        --rooms "$rooms" --clients-per-room "$size" --senders "$CHAT_SENDERS" \
        --duration "$DURATION" --threads "$CLIENT_THREADS" "${CLIENT_PIN_ARGS[@]}" --json \
        >"$out" 2>"$TMP/client.err"
      ;;
    *)
      CLIENT_FORMAT=loadgen-http
      local path="/ratelimit/{key}" method=GET
      [[ $workload == counter ]] && { path="/counter/{key}/increment"; method=POST; }
      timeout -k 5 "$limit_s" "$LOADGEN" http --url "http://$SERVER_ADDR$path" --method "$method" \
        --keys "$(keys_of "$workload")" --connections "$CONNECTIONS" --duration "$DURATION" \
        --threads "$CLIENT_THREADS" "${CLIENT_PIN_ARGS[@]}" --json >"$out" 2>"$TMP/client.err"
      ;;
  esac
}

# One run: a fresh server, the client, the record.
run_one() {
  local system=$1 workload=$2 rep=$3
  local data="$TMP/data-$system-$workload-$rep" failure="" started elapsed
  if [[ $system == redis-* ]] && ! calibrate_redis "$system" "$workload"; then
    failure="calibration: $START_ERROR"
  elif ! start_server "$system" "$data"; then
    failure="start: $START_ERROR"
  else
    started=$EPOCHREALTIME
    if ! run_client "$workload" "$system"; then
      failure="client failed: $(tail -n2 "$TMP/client.err" | tr '\n' ' ')"
    elif [[ $system == redis-* ]]; then
      # The next run's request count follows this run's rate.
      local rate
      rate=$(awk -F'"' 'NR == 2 { print int($4) }' "$TMP/client.out")
      [[ ${rate:-0} -gt 0 ]] && REDIS_RATE["$system $workload"]=$rate
    fi
    elapsed=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
    if [[ -n $SERVER_PID ]] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
      failure="${failure:+$failure; }the server died: $(tail -n2 "$SERVER_ERR" | tr '\n' ' ')"
    fi
  fi
  stop_server
  rm -rf "$data"
  local args=(record --workload "$workload" --system "$system" --rep "$rep" --format "${CLIENT_FORMAT:-none}"
    --file "$TMP/client.out" --elapsed-s "${elapsed:-0}")
  [[ -n $failure ]] && args+=(--failure "$failure")
  python3 "$COMPARE/results.py" "${args[@]}" | tee -a "$JSONL" |
    python3 "$COMPARE/results.py" describe >&2
  rm -f "$TMP/client.out"
  CLIENT_FORMAT=""
}

# Increments counter "persist" of the started server; prints the new value.
increment() {
  case "$1" in
    redis-*) redis-cli -p "${SERVER_ADDR#*:}" INCR counter:persist 2>/dev/null ;;
    *) curl -fsS --max-time 5 -X POST "http://$SERVER_ADDR/counter/persist/increment" 2>/dev/null |
      sed -n 's/.*"value": *\([0-9]*\).*/\1/p' ;;
  esac
}

# Checks that system $1 keeps its data across a restart: two increments,
# a stop, a start on the same data directory, one more increment that must
# answer 3. A system that fails is reported and left out of every run,
# since its numbers would not be those of a durable store.
check_persistence() {
  local system=$1 data="$TMP/persist-$1" got=""
  if start_server "$system" "$data"; then
    increment "$system" >/dev/null
    increment "$system" >/dev/null
    stop_server
    if start_server "$system" "$data"; then
      got=$(increment "$system")
    fi
  fi
  stop_server
  rm -rf "$data"
  if [[ $got == 3 ]]; then
    log "$system keeps its data across a restart (counter 2 -> restart -> 3)"
  else
    PEER_STATUS[$system]="failed the restart check: counter read ${got:-nothing} after 2 increments, a restart and 1 more${START_ERROR:+ ($START_ERROR)}"
    log "$system: ${PEER_STATUS[$system]}"
  fi
}

check_all_persist() {
  local system
  for system in "${SYSTEM_LIST[@]}"; do
    [[ $system == ceiling || -n ${PEER_STATUS[$system]:-} ]] && continue
    START_ERROR=""
    check_persistence "$system"
  done
}

# Writes a skip record for every system that cannot run a workload at all.
record_skips() {
  local workload system why
  for workload in "${WORKLOAD_LIST[@]}"; do
    for system in "${SYSTEM_LIST[@]}"; do
      why=$(unsupported "$system" "$workload")
      [[ -z $why ]] && why=${PEER_STATUS[$system]:-}
      [[ -z $why && $workload == chat-* && -n $CHAT_STATUS ]] && why="failed: $CHAT_STATUS"
      [[ -n $why ]] && python3 "$COMPARE/results.py" skip --workload "$workload" --system "$system" \
        --reason "$why" >>"$JSONL"
    done
  done
  return 0
}

# Prints the systems that run workload $1, rotated by repetition $2.
runnable() {
  local workload=$1 rep=$2 system list=()
  for system in "${SYSTEM_LIST[@]}"; do
    [[ -n $(unsupported "$system" "$workload") || -n ${PEER_STATUS[$system]:-} ]] && continue
    [[ $workload == chat-* && -n $CHAT_STATUS ]] && continue
    list+=("$system")
  done
  local n=${#list[@]} i
  for ((i = 0; i < n; i++)); do echo "${list[$(((i + rep - 1) % n))]}"; done
}

run_all() {
  record_skips
  local rep workload system
  for ((rep = 1; rep <= REPS; rep++)); do
    for workload in "${WORKLOAD_LIST[@]}"; do
      while read -r system; do
        [[ -n $system ]] && run_one "$system" "$workload" "$rep"
      done < <(runnable "$workload" "$rep")
    done
  done
}

# --- the session's facts ------------------------------------------------------

version_of() {
  case "$1" in
    durin) echo "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+dirty')" ;;
    workerd) "$WORKERD" --version 2>/dev/null | head -n1 ;;
    redis-*) redis-server --version 2>/dev/null | awk '{ print $3 }' | sed 's/^v=//' ;;
    ceiling) echo "bench/src/bin/ceiling" ;;
  esac
}

write_meta() {
  local args=(meta
    --set "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    --set "command=$COMMAND_LINE"
    --set "nproc=$(nproc)"
    --set "kernel=$(uname -r)"
    --set "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    --set "memory=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    --set "data_fs=$(df -PT "$TMP" | awk 'NR == 2 { print $1 " (" $2 ")" }')"
    --set "placement=$PLACEMENT"
    --set "cores=$CORES"
    --set "client_threads=$CLIENT_THREADS"
    --set "reps=$REPS"
    --set "duration=$DURATION"
    --set "connections=$CONNECTIONS"
    --set "chat_clients=$CHAT_CLIENTS"
    --set "chat_senders=$CHAT_SENDERS"
    --set "keys=$KEYS"
    --set "limit=$LIMIT per ${WINDOW_MS} ms"
    --set "loadgen=$("$LOADGEN" --version 2>/dev/null | head -n1)"
    --set "stamp=$STAMP"
    --set "workloads=$WORKLOADS"
    --set "systems=$SYSTEMS")
  local system
  for system in "${SYSTEM_LIST[@]}"; do
    if [[ -z ${PEER_STATUS[$system]:-} ]]; then
      args+=(--set "version.$system=$(version_of "$system")")
    else
      args+=(--set "status.$system=${PEER_STATUS[$system]}")
    fi
  done
  python3 "$COMPARE/results.py" "${args[@]}"
}

# --- the disk's limit ---------------------------------------------------------

# Appends one sync_probe record (`when`: before or after the runs) to the
# results: the latency of a 4 KiB write + fdatasync on the disk of the data
# directories, which every durable figure is read against.
probe_sync() {
  local when=$1 out
  if [[ ! -x $SYNC_PROBE ]]; then
    log "no sync_probe at $SYNC_PROBE; the disk's limit is not reported"
    return 0
  fi
  out=$("$SYNC_PROBE" --dir "$TMP" --count 2000 --json) || {
    log "sync_probe failed"
    return 0
  }
  log "disk sync probe ($when): $out"
  python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r["kind"] = "sync_probe"; r["when"] = sys.argv[2]; print(json.dumps(r))' "$out" "$when" >>"$JSONL"
}
