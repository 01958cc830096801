-- Record finished attempts, atomically (ordering.lua and lanes.lua are prepended): per
-- attempt, append the attempt record, update the delivery, release its in-flight lease, set
-- the retention TTL when it ended, release the next delivery of its ordering group when it
-- ended, bump the sink's hourly counters (outcome, and latency bucket), and run the failure
-- streak / circuit breaker (of the sink, or of the target for a fan-out sink) and the pause. Several attempts that
-- finished together are recorded in one call (one round trip), in order, exactly as if each
-- had been its own call.
--
-- Arguments: A (FinishArgs in gateway/storage/layout.py): A.attempts, one AttemptRecord each.
-- Returns {circuit_open_until, ...}, one per attempt: > 0 when that attempt opened (or
-- re-opened) a circuit, so the caller schedules a wake-up for then.
local p = A.prefix

-- The breaker: "success" closes the circuit and resets the streak; "failure" counts, opens
-- the circuit at the threshold, and re-opens it for twice as long when a half-open probe
-- fails; "none" (a refusal of ours, not the destination's failure) leaves it alone.
local function breaker(r, state_key, now)
  if r.circuit == "none" then return 0, false end
  local st = redis.call("HMGET", state_key, "circuit_open_until", "cooldown")
  if r.circuit == "success" then
    redis.call("HSET", state_key, "failure_streak", 0)
    if st[1] then
      redis.call("HDEL", state_key, "circuit_open_until", "cooldown", "probe_until", "opened_at")
      return 0, true
    end
    return 0, false
  end
  local streak = redis.call("HINCRBY", state_key, "failure_streak", 1)
  local base, cap = r.cooldown_ms, r.max_cooldown_ms
  if st[1] then
    if now >= tonumber(st[1]) then
      -- Half-open and the probe failed: open again for twice as long, up to the cap.
      local cooldown = math.min((tonumber(st[2]) or base) * 2, cap)
      redis.call("HSET", state_key, "circuit_open_until", now + cooldown, "cooldown", cooldown, "opened_at", now)
      redis.call("HDEL", state_key, "probe_until")
      return now + cooldown, false
    end
  elseif streak >= r.failure_threshold then
    redis.call("HSET", state_key, "circuit_open_until", now + base, "cooldown", base, "opened_at", now)
    return now + base, false
  end
  return 0, false
end

local function finish(r)
  local now, status = r.now_ms, r.status
  local dkey = p .. "delivery:" .. r.id
  local akey = dkey .. ":attempts"

  redis.call("ZREM", p .. "inflight:" .. r.sink, r.id)
  if redis.call("EXISTS", dkey) == 1 then
    redis.call("RPUSH", akey, r.attempt_json)
    redis.call("HSET", dkey, "status", status, "attempts", r.attempts, "round_attempts", r.round_attempts,
      "updated_at", now, "last_attempt_at", now)
    if r.next_attempt_at_ms then redis.call("HSET", dkey, "next_attempt_at", r.next_attempt_at_ms) else redis.call("HDEL", dkey, "next_attempt_at") end
    if r.last_status_code then redis.call("HSET", dkey, "last_status_code", r.last_status_code) else redis.call("HDEL", dkey, "last_status_code") end
    if r.last_error ~= "" then redis.call("HSET", dkey, "last_error", r.last_error) else redis.call("HDEL", dkey, "last_error") end
    if status ~= "retrying" then
      -- Ended (delivered or failed): kept for the retention period, and the next delivery
      -- of its ticket may go.
      redis.call("EXPIRE", dkey, r.retention_s)
      redis.call("EXPIRE", akey, r.retention_s)
      order_leave(p, r.id, status, now)
    end
  end

  local stats = p .. "sink:" .. r.sink .. ":stats:" .. r.hour
  redis.call("HINCRBY", stats, status, 1)
  if r.latency_bucket ~= "" then redis.call("HINCRBY", stats, "ms:" .. r.latency_bucket, 1) end
  redis.call("EXPIRE", stats, r.stats_ttl_s)

  if r.pause_reason ~= "" then
    redis.call("HSET", p .. "sink:" .. r.sink .. ":state", "paused", "1", "paused_reason", r.pause_reason,
      "paused_at", now)
  end

  if r.lane == "" then
    local opened = breaker(r, p .. "sink:" .. r.sink .. ":state", now)
    return opened
  end
  -- A fan-out sink: the target's own breaker; its freed slot goes to what it parked.
  local lane_state = lane_key(p, r.sink, r.lane, "state")
  redis.call("ZREM", lane_key(p, r.sink, r.lane, "inflight"), r.id)
  local opened, closed = breaker(r, lane_state, now)
  local open_lanes = p .. "sink:" .. r.sink .. ":open_lanes"
  if opened > 0 then
    redis.call("ZADD", open_lanes, opened, r.lane)
    redis.call("ZADD", lanes_key(p, r.sink), "XX", opened, r.lane)
  elseif closed then
    redis.call("ZREM", open_lanes, r.lane)
  end
  if not redis.call("HGET", lane_state, "circuit_open_until") then lane_refill(p, r.sink, r.lane, now, r.max_in_flight) end
  -- A target that is gone (an unsubscribed Zap) leaves no state behind for long.
  redis.call("EXPIRE", lane_state, r.retention_s)
  return opened
end

local result = {}
for _, r in ipairs(A.attempts) do result[#result + 1] = finish(r) end
return result
