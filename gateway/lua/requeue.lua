-- Put deliveries back on their sink's ready list and wake drainers (wake.lua is prepended).
-- Used by scheduled retries, replays, and "resume" (no ids, only sinks to wake).
--
-- ARGV: 1 prefix, 2 now ms, 3 max drainers, 4 drainer lease ms, 5 backlog per drainer,
--       6 mode ("retry" | "replay"), 7 n ids, then per id: id, expected attempts (retry mode),
--       then the names of extra sinks to wake, then (last) a token prefix for new drainers.
-- Returns {n requeued, {id, outcome}..., sink1, token1, sink2, token2, ...} where outcome is
-- "queued", "missing" (expired or unknown), "stale" (the retry was overtaken), or "busy"
-- (already queued or in flight).
local p, now = ARGV[1], tonumber(ARGV[2])
local max_drainers, lease, per_drainer = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local mode, n = ARGV[6], tonumber(ARGV[7])
local token_prefix = ARGV[#ARGV]
local outcomes, touched, order = {}, {}, {}
local count = 0

for i = 0, n - 1 do
  local id, expected = ARGV[8 + 2 * i], ARGV[9 + 2 * i]
  local dkey = p .. "delivery:" .. id
  local d = redis.call("HMGET", dkey, "sink", "status", "attempts")
  local outcome = "queued"
  if not d[1] then
    outcome = "missing"
  elseif redis.call("ZSCORE", p .. "inflight:" .. d[1], id) then
    outcome = "busy"
  elseif mode == "retry" and (d[2] ~= "retrying" or d[3] ~= expected) then
    outcome = "stale"
  elseif mode == "replay" and d[2] == "pending" then
    outcome = "busy"
  end
  if outcome == "queued" then
    if mode == "replay" then
      -- Same delivery id (consumers deduplicate on it); a fresh round of the retry schedule;
      -- no longer terminal, so no longer expiring.
      redis.call("HSET", dkey, "status", "pending", "round_attempts", 0, "next_attempt_at", now,
        "updated_at", now, "replayed_at", now)
      redis.call("HINCRBY", dkey, "replays", 1)
      redis.call("PERSIST", dkey)
      redis.call("PERSIST", dkey .. ":attempts")
    end
    redis.call("RPUSH", p .. "ready:" .. d[1], id)
    count = count + 1
    if not touched[d[1]] then touched[d[1]] = true; order[#order + 1] = d[1] end
  end
  outcomes[#outcomes + 1] = {id, outcome}
end
for i = 8 + 2 * n, #ARGV - 1 do
  if not touched[ARGV[i]] then touched[ARGV[i]] = true; order[#order + 1] = ARGV[i] end
end

local result = {count, outcomes}
for index, sink in ipairs(order) do
  local token = wake(p, sink, now, max_drainers, lease, per_drainer, token_prefix .. index)
  if token then result[#result + 1] = sink; result[#result + 1] = token end
end
return result
