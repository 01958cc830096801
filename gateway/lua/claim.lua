-- Claim up to N ready deliveries of one sink for a drainer, atomically.
-- Refreshes the drainer's lease, then refuses while the sink is held (paused, circuit open),
-- lets a single probe through when the circuit's cool-down has passed (half-open), respects
-- the sink's GLOBAL in-flight cap and rate limit, and moves ids from the ready list to the
-- in-flight ZSET with a lease. Each claimed delivery comes back with its hash and its event,
-- so an attempt needs no further read.
--
-- ARGV: 1 prefix, 2 sink, 3 token, 4 now ms, 5 drainer lease ms, 6 max in flight, 7 n,
--       8 in-flight lease ms, 9 rate interval ms (0 = no rate limit)
-- Returns {status, wait_ms, room, {id, {hash field/value...}, event JSON or false}, ...}
--   status: "ok" (something claimed), "empty" (ready list empty), "held" (paused / circuit
--   open: stop), "full" (in-flight cap reached), "probe" (a circuit probe is in flight),
--   "rate" (rate limited: try again in wait_ms).
--   room: free in-flight slots of the sink after this claim (0 when it is at its cap, so
--   the drainer waits for completions instead of claiming again only to hear "full").
local p, sink, token = ARGV[1], ARGV[2], ARGV[3]
local now, drainer_lease = tonumber(ARGV[4]), tonumber(ARGV[5])
local max_in_flight, n = tonumber(ARGV[6]), tonumber(ARGV[7])
local inflight_lease, interval = tonumber(ARGV[8]), tonumber(ARGV[9])
local state_key = p .. "sink:" .. sink .. ":state"
local ready = p .. "ready:" .. sink
local inflight = p .. "inflight:" .. sink

redis.call("ZADD", p .. "drainers:" .. sink, now + drainer_lease, token)

local st = redis.call("HMGET", state_key, "paused", "circuit_open_until", "probe_until", "next_slot")
if st[1] == "1" then return {"held", 0, 0} end
local half_open = false
if st[2] then
  if tonumber(st[2]) > now then return {"held", 0, 0} end
  half_open = true
  if st[3] and tonumber(st[3]) > now then return {"probe", 0, 0} end
  n = 1
end
if redis.call("LLEN", ready) == 0 then return {"empty", 0, 0} end
local room = max_in_flight - redis.call("ZCARD", inflight)
if room <= 0 then return {"full", 0, 0} end
if n > room then n = room end
if interval > 0 then
  if st[4] and tonumber(st[4]) > now then return {"rate", tonumber(st[4]) - now, room} end
  n = 1
end

local claimed = {}
while #claimed < n do
  local id = redis.call("LPOP", ready)
  if not id then break end
  local dkey = p .. "delivery:" .. id
  local status = redis.call("HGET", dkey, "status")
  -- Skip ids whose hash expired, that are already finished, or already being attempted
  -- (a duplicate push): each delivery is attempted by one worker at a time.
  if status and status ~= "delivered" and status ~= "failed" and not redis.call("ZSCORE", inflight, id) then
    redis.call("ZADD", inflight, now + inflight_lease, id)
    local fields = redis.call("HGETALL", dkey)
    local event_id = redis.call("HGET", dkey, "event_id")
    local event = redis.call("GET", p .. "event:" .. event_id)
    claimed[#claimed + 1] = {id, fields, event}
  end
end
if #claimed == 0 then return {"empty", 0, room} end
if half_open then redis.call("HSET", state_key, "probe_until", now + inflight_lease) end
if interval > 0 then redis.call("HSET", state_key, "next_slot", now + interval) end
local result = {"ok", 0, room - #claimed}
for _, item in ipairs(claimed) do result[#result + 1] = item end
return result
