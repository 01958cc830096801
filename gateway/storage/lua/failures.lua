-- Failure summaries (shared: prepended by gateway/storage/scripts.py to finish.lua, which
-- counts each delivery that ends failed, and to failure_summaries.lua, the sweepers' claim).
-- The delivery.failed system event is a summary: at most one per sink per window, counting
-- every failure since the previous one (docs/events.md, "delivery.failed"). A sweeper (every
-- ~2 s) reports a sink's first failures at once, with whatever else failed meanwhile (a
-- burst is one summary); then the window starts, and what fails in it is reported when it
-- ends.
--
-- sink:<sink>:failures (hash): count, since (ms of the first), last (the latest failure as
-- JSON, from the caller) of the failures not reported yet; "failures" (set): the sinks that
-- have such a hash; sink:<sink>:failure_summary (string, PX window): a summary went out in
-- the current window. Claiming is atomic, so each failure is reported exactly once, by one
-- process, whichever worker saw it.

-- Count one failure of `sink` (`last_json` describes it).
local function failures_note(p, sink, now, last_json, ttl_s)
  local key = p .. "sink:" .. sink .. ":failures"
  redis.call("HINCRBY", key, "count", 1)
  redis.call("HSETNX", key, "since", now)
  redis.call("HSET", key, "last", last_json)
  redis.call("EXPIRE", key, ttl_s)
  redis.call("SADD", p .. "failures", sink)
end

-- Report `sink`'s unreported failures unless a summary went out within the window: returns
-- {count, since_ms, last_json} and starts a new window, or {0, 0, ""}.
local function failures_claim(p, sink, now, window_ms)
  local key = p .. "sink:" .. sink .. ":failures"
  local window = p .. "sink:" .. sink .. ":failure_summary"
  if redis.call("EXISTS", window) == 1 then return {0, 0, ""} end
  local found = redis.call("HMGET", key, "count", "since", "last")
  redis.call("SREM", p .. "failures", sink)
  if not found[1] then return {0, 0, ""} end
  redis.call("DEL", key)
  redis.call("SET", window, now, "PX", window_ms)
  return {tonumber(found[1]), tonumber(found[2]) or now, found[3] or ""}
end
