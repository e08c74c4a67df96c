-- Durable PUTs: every request writes a fresh key of one of 1,000 kv
-- objects (`PUT /kv/o<N mod 1000>/keys/k<N>`, 32-byte value), and is
-- answered only once the write is durable.
--
--   wrk -t2 -c64 -d10s -s bench/wrk/kv_put.lua http://127.0.0.1:8080

local threads_started = 0

setup = function(thread)
  threads_started = threads_started + 1
  thread:set("thread_id", threads_started)
end

local n = 0
local body = string.rep("v", 32)

request = function()
  n = n + 1
  local key = (thread_id or 0) * 100000000 + n
  return wrk.format("PUT", "/kv/o" .. (key % 1000) .. "/keys/k" .. key, nil, body)
end
