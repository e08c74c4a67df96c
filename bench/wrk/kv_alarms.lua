-- Sets one alarm a day ahead on each of many kv objects
-- (`PUT /kv/a<N>/alarm {"in_ms": 86400000}`), to fill the alarm index.
-- With ALARM_OBJECTS set, N runs through 0 .. ALARM_OBJECTS-1 once per
-- thread range and then repeats (re-setting an alarm replaces it).

local threads_started = 0

setup = function(thread)
  threads_started = threads_started + 1
  thread:set("thread_id", threads_started)
end

local n = 0
local objects = tonumber(os.getenv("ALARM_OBJECTS") or "1000000")
local threads = tonumber(os.getenv("ALARM_THREADS") or "2")
local body = '{"in_ms": 86400000}'

request = function()
  local span = math.floor(objects / threads)
  local object = ((thread_id or 1) - 1) * span + (n % span)
  n = n + 1
  return wrk.format("PUT", "/kv/a" .. object .. "/alarm", nil, body)
end
