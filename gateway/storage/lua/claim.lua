-- Claim up to N ready deliveries of one sink for a drainer, atomically (lanes.lua is
-- prepended). Refreshes the drainer's lease, refuses while the sink is paused, and moves ids
-- from the ready list to the in-flight ZSET with a lease. Each claimed delivery comes back
-- with its hash and its event, so an attempt needs no further read.
--
-- The circuit breaker, the in-flight cap and the rate limit apply to the sink as a whole
-- (refuse while its circuit is open; a single probe when the cool-down has passed; the
-- GLOBAL cap across processes; one delivery per interval), or, for a fan-out sink
-- (A.fan_out = 1), to each target: a delivery whose target may not go now is parked and the
-- claim goes on with the next (lanes.lua).
--
-- Only pending and retrying deliveries are claimed: a "waiting" one (ordered delivery, behind
-- an earlier one of its ticket) is never on the ready list, and ended ones are skipped.
--
-- Arguments: A (ClaimArgs in gateway/storage/layout.py).
-- Returns {status, wait_ms, room, {id, {hash field/value...}, event JSON or false}, ...}
--   status: "ok" (claimed; for a fan-out sink possibly nothing yet: claim again), "empty"
--   (ready list empty), "held" (paused / circuit open: stop), "full" (in-flight cap reached),
--   "probe" (a circuit probe is in flight), "rate" (rate limited: try again in wait_ms).
--   room: free in-flight slots of the sink after this claim (0 when it is at its cap, so
--   the drainer waits for completions instead of claiming again only to hear "full").
local p, sink = A.prefix, A.sink
local now, n = A.now_ms, A.n
local state_key = p .. "sink:" .. sink .. ":state"
local ready = p .. "ready:" .. sink
local inflight = p .. "inflight:" .. sink
local SCAN_BUDGET = 256  -- ids a fan-out claim may look at (and park) in one call

redis.call("ZADD", p .. "drainers:" .. sink, now + A.drainer_lease_ms, A.token)

-- Claimable: pending or retrying. Skip ids whose hash expired, that ended, that wait for an
-- earlier delivery of their ordering group, or that are already being attempted (a
-- duplicate push): each delivery is attempted by one worker at a time.
local function claimable(dkey, id)
  local status = redis.call("HGET", dkey, "status")
  return (status == "pending" or status == "retrying") and not redis.call("ZSCORE", inflight, id)
end

local function take(claimed, id, dkey)
  redis.call("ZADD", inflight, now + A.inflight_lease_ms, id)
  local fields = redis.call("HGETALL", dkey)
  local event_id = redis.call("HGET", dkey, "event_id")
  local event = redis.call("GET", p .. "event:" .. event_id)
  claimed[#claimed + 1] = {id, fields, event}
end

local function reply(status, wait_ms, room, claimed)
  local result = {status, wait_ms, room}
  for _, item in ipairs(claimed) do result[#result + 1] = item end
  return result
end

local st = redis.call("HMGET", state_key, "paused", "circuit_open_until", "probe_until", "next_slot")
if st[1] == "1" then return {"held", 0, 0} end

if A.fan_out == 1 then
  lanes_due(p, sink, now, A.max_in_flight, A.rate_interval_ms)
  local claimed, lanes, looked = {}, {}, 0
  while #claimed < n and looked < SCAN_BUDGET do
    local id = redis.call("LPOP", ready)
    if not id then break end
    looked = looked + 1
    local dkey = p .. "delivery:" .. id
    if claimable(dkey, id) then
      local lane = lane_of(redis.call("HGET", dkey, "target"))
      local allowed = lanes[lane]
      if not allowed then
        local room, again = lane_allows(p, sink, lane, now, A.max_in_flight, A.rate_interval_ms)
        allowed = {room = room, again = again, took = 0}
        lanes[lane] = allowed
      end
      if allowed.room > 0 then
        allowed.room = allowed.room - 1
        allowed.took = allowed.took + 1
        take(claimed, id, dkey)
        redis.call("ZADD", lane_key(p, sink, lane, "inflight"), now + A.inflight_lease_ms, id)
      else
        lane_park(p, sink, lane, id, allowed.again)
      end
    end
  end
  for lane, allowed in pairs(lanes) do
    if allowed.took > 0 then
      local lane_state = lane_key(p, sink, lane, "state")
      if redis.call("HEXISTS", lane_state, "circuit_open_until") == 1 then
        redis.call("HSET", lane_state, "probe_until", now + A.inflight_lease_ms)
      elseif A.rate_interval_ms > 0 then
        redis.call("HSET", lane_state, "next_slot", now + A.rate_interval_ms)
        -- What the lane parked may go at its next slot.
        redis.call("ZADD", lanes_key(p, sink), "XX", "LT", now + A.rate_interval_ms, lane)
      end
    end
  end
  if #claimed == 0 and redis.call("LLEN", ready) == 0 then
    -- Everything left is parked: when a lane is due within a second, say when (the drainer
    -- waits that long rather than releasing); later ones are woken by a job or the sweeper.
    local first = redis.call("ZRANGE", lanes_key(p, sink), 0, 0, "WITHSCORES")
    if first[2] and tonumber(first[2]) - now <= 1000 then
      return {"rate", math.max(tonumber(first[2]) - now, 1), 1}
    end
    return {"empty", 0, 1}
  end
  -- No sink-wide cap: the targets' own caps are what limits a fan-out sink.
  return reply("ok", 0, 1, claimed)
end

local half_open = false
if st[2] then
  if tonumber(st[2]) > now then return {"held", 0, 0} end
  half_open = true
  if st[3] and tonumber(st[3]) > now then return {"probe", 0, 0} end
  n = 1
end
if redis.call("LLEN", ready) == 0 then return {"empty", 0, 0} end
local room = A.max_in_flight - redis.call("ZCARD", inflight)
if room <= 0 then return {"full", 0, 0} end
if n > room then n = room end
if A.rate_interval_ms > 0 then
  if st[4] and tonumber(st[4]) > now then return {"rate", tonumber(st[4]) - now, room} end
  n = 1
end

local claimed = {}
while #claimed < n do
  local id = redis.call("LPOP", ready)
  if not id then break end
  local dkey = p .. "delivery:" .. id
  if claimable(dkey, id) then take(claimed, id, dkey) end
end
if #claimed == 0 then return {"empty", 0, room} end
if half_open then redis.call("HSET", state_key, "probe_until", now + A.inflight_lease_ms) end
if A.rate_interval_ms > 0 then redis.call("HSET", state_key, "next_slot", now + A.rate_interval_ms) end
return reply("ok", 0, room - #claimed, claimed)
