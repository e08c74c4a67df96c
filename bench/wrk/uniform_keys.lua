-- Sends every request to one of 10,000 rate-limit keys chosen uniformly at
-- random (`/ratelimit/k0` .. `/ratelimit/k9999`), so the durable write path
-- sees a spread of objects rather than one hot counter.
--
--   wrk -t2 -c64 -d10s -s bench/wrk/uniform_keys.lua http://127.0.0.1:8080

local keys = 10000
local threads_started = 0

-- Runs in the main Lua state once per thread, before the thread starts; the
-- number handed over seeds that thread's generator.
setup = function(thread)
  threads_started = threads_started + 1
  thread:set("thread_id", threads_started)
end

-- Runs in each thread's own Lua state: seed it so that threads (and runs)
-- do not walk the same key sequence.
init = function(args)
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
end

-- WRK_PATH_PREFIX picks the class (default /ratelimit/k): /counter/k reads
-- counters without writing, to separate the loop's cost from durability.
local prefix = os.getenv("WRK_PATH_PREFIX") or "/ratelimit/k"

request = function()
  return wrk.format("GET", prefix .. math.random(0, keys - 1))
end
