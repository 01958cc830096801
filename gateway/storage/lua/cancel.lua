-- End deliveries that are still waiting, for good: a deleted sink's (ordering.lua and
-- lanes.lua are prepended). Per id, when its status is still a waiting one (pending,
-- retrying, waiting for its turn), it becomes "cancelled" with the reason, stops being retried
-- (a scheduled retry finds it no longer retrying) and expires with the delivery log's
-- retention like any finished delivery. A cancelled delivery has ended, so it leaves its
-- ordering group through order_leave like any other: a cancelled head releases the next
-- delivery of its ticket (which, being the deleted sink's too, is cancelled in turn).
-- A delivery being attempted is left to finish unless the caller is the one attempting it
-- (A.claimed = 1: its in-flight leases, the sink's and a fan-out target's, are given back).
-- With A.last = 1 (the last batch of a deleted sink's deliveries) and the sink still gone (no
-- stored sink of that name), its ready list, its state (pause, circuit) and its fan-out
-- targets' state and parked lists go too, so a sink created later under the name starts clean.
--
-- Arguments: A (CancelArgs in gateway/storage/layout.py).
-- Returns the number of deliveries cancelled.
local p, sink, now = A.prefix, A.sink, A.now_ms
local inflight = p .. "inflight:" .. sink
local waiting = {pending = true, retrying = true, waiting = true}
local cancelled = 0
for _, id in ipairs(A.ids) do
  local dkey = p .. "delivery:" .. id
  local status = redis.call("HGET", dkey, "status")
  local busy = redis.call("ZSCORE", inflight, id)
  if A.claimed == 1 then
    redis.call("ZREM", inflight, id)
    if status then
      -- Only a fan-out sink has a lane in flight; for any other this key does not exist.
      redis.call("ZREM", lane_key(p, sink, lane_of(redis.call("HGET", dkey, "target")), "inflight"), id)
    end
    busy = false
  end
  if status and waiting[status] and not busy then
    redis.call("HSET", dkey, "status", "cancelled", "cancel_reason", A.reason,
      "last_error", A.reason .. ": " .. A.message, "updated_at", now)
    redis.call("HDEL", dkey, "next_attempt_at", "waiting_for")
    redis.call("EXPIRE", dkey, A.retention_s)
    redis.call("EXPIRE", dkey .. ":attempts", A.retention_s)
    order_leave(p, id, "cancelled", now)
    cancelled = cancelled + 1
  end
end
if A.last == 1 and redis.call("HEXISTS", p .. "integrations:sinks", sink) == 0 then
  local doomed = {p .. "ready:" .. sink, p .. "sink:" .. sink .. ":state", lanes_key(p, sink),
    p .. "sink:" .. sink .. ":open_lanes"}
  for _, lane in ipairs(redis.call("ZRANGE", lanes_key(p, sink), 0, -1)) do
    doomed[#doomed + 1] = lane_key(p, sink, lane, "parked")
    doomed[#doomed + 1] = lane_key(p, sink, lane, "state")
  end
  for _, lane in ipairs(redis.call("ZRANGE", p .. "sink:" .. sink .. ":open_lanes", 0, -1)) do
    doomed[#doomed + 1] = lane_key(p, sink, lane, "state")
  end
  for _, key in ipairs(doomed) do redis.call("DEL", key) end
end
return cancelled
