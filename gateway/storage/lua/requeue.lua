-- Put deliveries back on their sink's ready list and wake drainers (wake.lua, ordering.lua
-- and lanes.lua are prepended). Used by scheduled retries, replays, and wake-ups (no ids, only
-- sinks to wake: "resume", the end of a circuit's cool-down).
--
-- A replay with A.keep_order = 1 (a batch replay, rows in original order) puts an ordered
-- delivery at the end of its ordering group's queue: sent when the deliveries before it have
-- ended. Without it (one replay) the delivery is sent now, out of order: the admin asked.
-- Every sink touched gets its due parked targets looked at (lanes.lua), so a fan-out target
-- whose cool-down ended gets its probe.
--
-- Arguments: A (RequeueArgs in gateway/storage/layout.py).
-- Returns {n requeued, {id, outcome}..., sink1, token1, sink2, token2, ...} where outcome is
-- "queued", "missing" (expired or unknown), "stale" (the retry was overtaken), or "busy"
-- (already queued, waiting behind an earlier delivery of its ticket, or in flight).
local p, now, mode = A.prefix, A.now_ms, A.mode
local outcomes, touched, order = {}, {}, {}
local count = 0

for _, row in ipairs(A.deliveries) do
  local id = row.id
  local dkey = p .. "delivery:" .. id
  local d = redis.call("HMGET", dkey, "sink", "status", "attempts", "order_group")
  local outcome = "queued"
  if not d[1] then
    outcome = "missing"
  elseif redis.call("ZSCORE", p .. "inflight:" .. d[1], id) then
    outcome = "busy"
  elseif mode == "retry" and (d[2] ~= "retrying" or d[3] ~= row.expected_attempts) then
    outcome = "stale"
  elseif mode == "replay" and (d[2] == "pending" or d[2] == "waiting") then
    outcome = "busy"
  end
  if outcome == "queued" then
    local waits_for = false
    if mode == "replay" then
      -- Same delivery id (consumers deduplicate on it); a fresh round of the retry schedule;
      -- no longer terminal, so no longer expiring.
      if A.keep_order == 1 and d[4] and d[4] ~= "" and not redis.call("LPOS", order_queue(p, d[1], d[4]), id) then
        waits_for = order_join(p, d[1], d[4], id)
      end
      redis.call("HSET", dkey, "status", waits_for and "waiting" or "pending", "round_attempts", 0,
        "next_attempt_at", now, "updated_at", now, "replayed_at", now)
      if waits_for then redis.call("HSET", dkey, "waiting_for", waits_for) end
      redis.call("HDEL", dkey, "waited_for", "waited_for_status", "released_at")
      redis.call("HINCRBY", dkey, "replays", 1)
      redis.call("PERSIST", dkey)
      redis.call("PERSIST", dkey .. ":attempts")
    end
    if not waits_for then redis.call("RPUSH", p .. "ready:" .. d[1], id) end
    count = count + 1
    if not touched[d[1]] then touched[d[1]] = true; order[#order + 1] = d[1] end
  end
  outcomes[#outcomes + 1] = {id, outcome}
end
for _, sink in ipairs(A.wake_sinks) do
  if not touched[sink] then touched[sink] = true; order[#order + 1] = sink end
end

local result = {count, outcomes}
for index, sink in ipairs(order) do
  lanes_due(p, sink, now, 0, 0)
  local token = wake(p, sink, now, A.max_drainers, A.drainer_lease_ms, A.backlog_per_drainer, A.token_prefix .. index)
  if token then result[#result + 1] = sink; result[#result + 1] = token end
end
return result
