-- Record finished attempts, atomically: per attempt, append the attempt record, update the
-- delivery, release its in-flight lease, set the retention TTL when it is terminal, bump the
-- sink's hourly counters, and run the sink's failure streak / circuit breaker (and pause).
-- Several attempts that finished together are recorded in one call (one round trip), in
-- order, exactly as if each had been its own call.
--
-- ARGV: 1 prefix, then per attempt RECORD (= 18) values:
--       id, sink, now ms, attempt JSON, status (delivered|retrying|failed), attempts,
--       attempts this round, next attempt at ms ("" = none), last status code ("" = none),
--       last error ("" = none), retention s, success (1|0), failure threshold,
--       base cool-down ms, max cool-down ms, pause reason ("" = do not pause), hour bucket,
--       counter TTL s
-- Returns {circuit_open_until, ...}, one per attempt: > 0 when that attempt opened (or
-- re-opened) the circuit, so the caller schedules a wake-up for then.
local RECORD = 18
local p = ARGV[1]

local function finish(a)
  local id, sink = ARGV[a], ARGV[a + 1]
  local now = tonumber(ARGV[a + 2])
  local status = ARGV[a + 4]
  local dkey = p .. "delivery:" .. id
  local akey = dkey .. ":attempts"
  local state_key = p .. "sink:" .. sink .. ":state"

  redis.call("ZREM", p .. "inflight:" .. sink, id)
  if redis.call("EXISTS", dkey) == 1 then
    redis.call("RPUSH", akey, ARGV[a + 3])
    redis.call("HSET", dkey, "status", status, "attempts", ARGV[a + 5], "round_attempts", ARGV[a + 6],
      "updated_at", now, "last_attempt_at", now)
    if ARGV[a + 7] ~= "" then redis.call("HSET", dkey, "next_attempt_at", ARGV[a + 7]) else redis.call("HDEL", dkey, "next_attempt_at") end
    if ARGV[a + 8] ~= "" then redis.call("HSET", dkey, "last_status_code", ARGV[a + 8]) else redis.call("HDEL", dkey, "last_status_code") end
    if ARGV[a + 9] ~= "" then redis.call("HSET", dkey, "last_error", ARGV[a + 9]) else redis.call("HDEL", dkey, "last_error") end
    if status == "delivered" or status == "failed" then
      redis.call("EXPIRE", dkey, tonumber(ARGV[a + 10]))
      redis.call("EXPIRE", akey, tonumber(ARGV[a + 10]))
    end
  end

  local stats = p .. "sink:" .. sink .. ":stats:" .. ARGV[a + 16]
  redis.call("HINCRBY", stats, status, 1)
  redis.call("EXPIRE", stats, tonumber(ARGV[a + 17]))

  if ARGV[a + 15] ~= "" then
    redis.call("HSET", state_key, "paused", "1", "paused_reason", ARGV[a + 15], "paused_at", now)
  end

  local opened = 0
  local st = redis.call("HMGET", state_key, "circuit_open_until", "cooldown")
  if ARGV[a + 11] == "1" then
    redis.call("HSET", state_key, "failure_streak", 0)
    if st[1] then redis.call("HDEL", state_key, "circuit_open_until", "cooldown", "probe_until", "opened_at") end
  else
    local streak = redis.call("HINCRBY", state_key, "failure_streak", 1)
    local base, cap = tonumber(ARGV[a + 13]), tonumber(ARGV[a + 14])
    if st[1] then
      if now >= tonumber(st[1]) then
        -- Half-open and the probe failed: open again for twice as long, up to the cap.
        local cooldown = math.min((tonumber(st[2]) or base) * 2, cap)
        opened = now + cooldown
        redis.call("HSET", state_key, "circuit_open_until", opened, "cooldown", cooldown, "opened_at", now)
        redis.call("HDEL", state_key, "probe_until")
      end
    elseif streak >= tonumber(ARGV[a + 12]) then
      opened = now + base
      redis.call("HSET", state_key, "circuit_open_until", opened, "cooldown", base, "opened_at", now)
    end
  end
  return opened
end

local result = {}
for a = 2, #ARGV, RECORD do result[#result + 1] = finish(a) end
return result
