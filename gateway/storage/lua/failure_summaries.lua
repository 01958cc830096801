-- The sweeper's claim of failure summaries (failures.lua is prepended): every sink with
-- failures not reported yet and no summary within the window gets its summary now, and a
-- new window starts. Atomic: of several sweepers, one reports each failure, once.
--
-- Arguments: A (FailureSummariesArgs in gateway/storage/layout.py).
-- Returns {{sink, count, since_ms, last_json}...}
local p, now = A.prefix, A.now_ms
local due = {}
for _, sink in ipairs(redis.call("SRANDMEMBER", p .. "failures", A.limit)) do
  local claimed = failures_claim(p, sink, now, A.window_ms)
  if claimed[1] > 0 then due[#due + 1] = {sink, claimed[1], claimed[2], claimed[3]} end
end
return due
