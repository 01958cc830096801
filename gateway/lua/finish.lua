-- Record one finished attempt, atomically: append the attempt record, update the delivery,
-- release its in-flight lease, set the retention TTL when it is terminal, bump the sink's
-- hourly counters, and run the sink's failure streak / circuit breaker (and pause).
--
-- ARGV: 1 prefix, 2 delivery id, 3 sink, 4 now ms, 5 attempt JSON,
--       6 status (delivered|retrying|failed), 7 attempts, 8 attempts this round,
--       9 next attempt at ms ("" = none), 10 last status code ("" = none), 11 last error ("" = none),
--       12 retention s, 13 success (1|0), 14 failure threshold, 15 base cool-down ms,
--       16 max cool-down ms, 17 pause reason ("" = do not pause), 18 hour bucket, 19 counter TTL s
-- Returns {circuit_open_until}: > 0 when this attempt opened (or re-opened) the circuit, so
-- the caller schedules a wake-up for then.
local p, id, sink = ARGV[1], ARGV[2], ARGV[3]
local now = tonumber(ARGV[4])
local status = ARGV[6]
local dkey = p .. "delivery:" .. id
local akey = dkey .. ":attempts"
local state_key = p .. "sink:" .. sink .. ":state"

redis.call("ZREM", p .. "inflight:" .. sink, id)
if redis.call("EXISTS", dkey) == 1 then
  redis.call("RPUSH", akey, ARGV[5])
  redis.call("HSET", dkey, "status", status, "attempts", ARGV[7], "round_attempts", ARGV[8],
    "updated_at", now, "last_attempt_at", now)
  if ARGV[9] ~= "" then redis.call("HSET", dkey, "next_attempt_at", ARGV[9]) else redis.call("HDEL", dkey, "next_attempt_at") end
  if ARGV[10] ~= "" then redis.call("HSET", dkey, "last_status_code", ARGV[10]) else redis.call("HDEL", dkey, "last_status_code") end
  if ARGV[11] ~= "" then redis.call("HSET", dkey, "last_error", ARGV[11]) else redis.call("HDEL", dkey, "last_error") end
  if status == "delivered" or status == "failed" then
    redis.call("EXPIRE", dkey, tonumber(ARGV[12]))
    redis.call("EXPIRE", akey, tonumber(ARGV[12]))
  end
end

local stats = p .. "sink:" .. sink .. ":stats:" .. ARGV[18]
redis.call("HINCRBY", stats, status, 1)
redis.call("EXPIRE", stats, tonumber(ARGV[19]))

if ARGV[17] ~= "" then
  redis.call("HSET", state_key, "paused", "1", "paused_reason", ARGV[17], "paused_at", now)
end

local opened = 0
local st = redis.call("HMGET", state_key, "circuit_open_until", "cooldown")
if ARGV[13] == "1" then
  redis.call("HSET", state_key, "failure_streak", 0)
  if st[1] then redis.call("HDEL", state_key, "circuit_open_until", "cooldown", "probe_until", "opened_at") end
else
  local streak = redis.call("HINCRBY", state_key, "failure_streak", 1)
  local base, cap = tonumber(ARGV[15]), tonumber(ARGV[16])
  if st[1] then
    if now >= tonumber(st[1]) then
      -- Half-open and the probe failed: open again for twice as long, up to the cap.
      local cooldown = math.min((tonumber(st[2]) or base) * 2, cap)
      opened = now + cooldown
      redis.call("HSET", state_key, "circuit_open_until", opened, "cooldown", cooldown, "opened_at", now)
      redis.call("HDEL", state_key, "probe_until")
    end
  elseif streak >= tonumber(ARGV[14]) then
    opened = now + base
    redis.call("HSET", state_key, "circuit_open_until", opened, "cooldown", base, "opened_at", now)
  end
end
return {opened}
