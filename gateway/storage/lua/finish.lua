-- Record finished attempts, atomically (ordering.lua and lanes.lua are prepended): per
-- attempt, append the attempt record, update the delivery, release its in-flight lease, set
-- the retention TTL when it ended, release the next delivery of its ordering group when it
-- ended, bump the sink's hourly counters (outcome, and latency bucket), and run the failure
-- streak / circuit breaker (of the sink, or of the target for a fan-out sink) and the pause. Several attempts that
-- finished together are recorded in one call (one round trip), in order, exactly as if each
-- had been its own call.
--
-- A delivery that ends failed is counted for the sink's failure summary (failures.lua,
-- prepended too; the sweeper publishes the summaries).
--
-- Arguments: A (FinishArgs in gateway/storage/layout.py): A.attempts, one AttemptRecord each.
-- Returns one {circuit_open_until, transition, opened_at, paused} per attempt:
--   circuit_open_until > 0 when that attempt opened (or re-opened) a circuit, so the caller
--   schedules a wake-up for then; transition "opened" (it was closed), "reopened" (a probe
--   failed), "closed" or "": each transition is reported by exactly one attempt, whichever
--   process finished it, which is what lets that process alone publish the system event;
--   opened_at: when the circuit first opened (ms; for "opened" and "closed"); paused: 1 when
--   this attempt paused a sink that was not paused.
local p = A.prefix

-- The breaker: "success" closes the circuit and resets the streak; "failure" counts, opens
-- the circuit at the threshold, and re-opens it for twice as long when a half-open probe
-- fails; "none" (a refusal of ours, not the destination's failure) leaves it alone.
-- Returns circuit_open_until (0: not opened by this attempt), the transition, opened_at.
local function breaker(r, state_key, now)
  if r.circuit == "none" then return 0, "", 0 end
  local st = redis.call("HMGET", state_key, "circuit_open_until", "cooldown", "opened_at")
  if r.circuit == "success" then
    redis.call("HSET", state_key, "failure_streak", 0)
    if st[1] then
      redis.call("HDEL", state_key, "circuit_open_until", "cooldown", "probe_until", "opened_at")
      return 0, "closed", tonumber(st[3]) or 0
    end
    return 0, "", 0
  end
  local streak = redis.call("HINCRBY", state_key, "failure_streak", 1)
  local base, cap = r.cooldown_ms, r.max_cooldown_ms
  if st[1] then
    if now >= tonumber(st[1]) then
      -- Half-open and the probe failed: open again for twice as long, up to the cap
      -- (opened_at stays when the outage began).
      local cooldown = math.min((tonumber(st[2]) or base) * 2, cap)
      redis.call("HSET", state_key, "circuit_open_until", now + cooldown, "cooldown", cooldown)
      redis.call("HDEL", state_key, "probe_until")
      return now + cooldown, "reopened", tonumber(st[3]) or 0
    end
  elseif streak >= r.failure_threshold then
    redis.call("HSET", state_key, "circuit_open_until", now + base, "cooldown", base, "opened_at", now)
    return now + base, "opened", now
  end
  return 0, "", 0
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

  local paused = 0
  if r.pause_reason ~= "" then
    local state_key = p .. "sink:" .. r.sink .. ":state"
    if redis.call("HGET", state_key, "paused") ~= "1" then paused = 1 end
    redis.call("HSET", state_key, "paused", "1", "paused_reason", r.pause_reason, "paused_at", now)
  end

  if status == "failed" and r.failure_json ~= "" then
    failures_note(p, r.sink, now, r.failure_json, r.retention_s)
  end

  if r.lane == "" then
    local opened, transition, opened_at = breaker(r, p .. "sink:" .. r.sink .. ":state", now)
    return {opened, transition, opened_at, paused}
  end
  -- A fan-out sink: the target's own breaker; its freed slot goes to what it parked.
  local lane_state = lane_key(p, r.sink, r.lane, "state")
  redis.call("ZREM", lane_key(p, r.sink, r.lane, "inflight"), r.id)
  local opened, transition, opened_at = breaker(r, lane_state, now)
  local open_lanes = p .. "sink:" .. r.sink .. ":open_lanes"
  if opened > 0 then
    redis.call("ZADD", open_lanes, opened, r.lane)
    redis.call("ZADD", lanes_key(p, r.sink), "XX", opened, r.lane)
  elseif transition == "closed" then
    redis.call("ZREM", open_lanes, r.lane)
  end
  if not redis.call("HGET", lane_state, "circuit_open_until") then lane_refill(p, r.sink, r.lane, now, r.max_in_flight) end
  -- A target that is gone (an unsubscribed Zap) leaves no state behind for long.
  redis.call("EXPIRE", lane_state, r.retention_s)
  return {opened, transition, opened_at, paused}
end

local result = {}
for _, r in ipairs(A.attempts) do result[#result + 1] = finish(r) end
return result
