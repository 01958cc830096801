-- Per-target state of fan-out sinks (shared: prepended by gateway/storage/scripts.py to the
-- scripts that claim, finish, requeue and sweep). See docs/delivery-engine.md, "Fan-out sinks".
--
-- A fan-out sink (SinkType(fan_out=True), e.g. Zapier) keeps one ready list, but its circuit
-- breaker, in-flight cap and rate limit belong to each target (a "lane", named by the
-- target's key): sink:<sink>:lane:<lane>:state (hash), :inflight (zset of ids by lease
-- expiry). A ready delivery whose lane may not be attempted now (circuit open, probe out, at
-- its cap, rate limited) is PARKED by claim.lua: moved to sink:<sink>:lane:<lane>:parked, so
-- it neither blocks the other lanes nor is charged an attempt. sink:<sink>:lanes holds the
-- lanes with parked deliveries, scored by when to look at them again. Parked deliveries go
-- back to the FRONT of the ready list (they are the oldest) when
--   * a lane attempt ends and the lane has free slots (finish.lua: lane_refill), or
--   * the lane is due (lanes_due: claim.lua lets through what the lane allows; the wake-up at
--     the end of a cool-down and the sweeper move one, the probe or a nudge).
-- sink:<sink>:open_lanes indexes the lanes whose circuit is open, for the sink's state.

local LANE_RECHECK_MS = 5000  -- the latest a lane with parked deliveries is looked at again

local function lane_key(p, sink, lane, part)
  return p .. "sink:" .. sink .. ":lane:" .. lane .. ":" .. part
end

local function lanes_key(p, sink)
  return p .. "sink:" .. sink .. ":lanes"
end

-- The lane of a delivery of a fan-out sink: its target's key.
local function lane_of(target_json)
  local ok, target = pcall(cjson.decode, target_json or "")
  if ok and type(target) == "table" and type(target.key) == "string" and target.key ~= "" then
    return target.key
  end
  return "default"
end

-- Hold a ready delivery back until its lane is looked at again (at `due` ms at the latest).
local function lane_park(p, sink, lane, id, due)
  redis.call("RPUSH", lane_key(p, sink, lane, "parked"), id)
  -- LT: the earliest reason wins; ZADD LT adds the lane when it is not there yet.
  redis.call("ZADD", lanes_key(p, sink), "LT", due, lane)
end

-- Move up to n parked deliveries of a lane back to the front of the ready list, oldest first
-- at the head. The lane leaves sink:<sink>:lanes once nothing of it is parked. Returns how many.
local function lane_unpark(p, sink, lane, n)
  if n <= 0 then return 0 end
  local parked = lane_key(p, sink, lane, "parked")
  local ids = redis.call("LPOP", parked, n)
  if not ids then
    redis.call("ZREM", lanes_key(p, sink), lane)
    return 0
  end
  local ready = p .. "ready:" .. sink
  for i = #ids, 1, -1 do redis.call("LPUSH", ready, ids[i]) end
  if redis.call("LLEN", parked) == 0 then redis.call("ZREM", lanes_key(p, sink), lane) end
  return #ids
end

-- Live in-flight attempts of a lane (expired leases are dropped: the sweeper requeues them).
local function lane_in_flight(p, sink, lane, now)
  local inflight = lane_key(p, sink, lane, "inflight")
  redis.call("ZREMRANGEBYSCORE", inflight, "-inf", now)
  return redis.call("ZCARD", inflight)
end

-- How many deliveries a lane may start now, and otherwise when to look at it again (ms):
-- its circuit (open: none until the cool-down ends; half-open: one probe), rate limit (one
-- per interval) and cap.
local function lane_allows(p, sink, lane, now, cap, rate_interval_ms)
  local st = redis.call("HMGET", lane_key(p, sink, lane, "state"), "circuit_open_until", "probe_until", "next_slot")
  if st[1] then
    local open_until = tonumber(st[1])
    if open_until > now then return 0, open_until end
    if st[2] and tonumber(st[2]) > now then return 0, tonumber(st[2]) end
    return 1, now + LANE_RECHECK_MS
  end
  if rate_interval_ms > 0 and st[3] and tonumber(st[3]) > now then return 0, tonumber(st[3]) end
  local room = cap - lane_in_flight(p, sink, lane, now)
  if room <= 0 then return 0, now + LANE_RECHECK_MS end
  if rate_interval_ms > 0 then room = 1 end
  return room, now + LANE_RECHECK_MS
end

-- Look at the lanes that are due: move back to the ready list what each may start now (with
-- cap = 0, one each: a nudge from a caller that does not know the sink's limits; claim.lua
-- parks again what may not go), and set when to look at the rest again.
local function lanes_due(p, sink, now, cap, rate_interval_ms)
  local lanes = lanes_key(p, sink)
  for _, lane in ipairs(redis.call("ZRANGEBYSCORE", lanes, "-inf", now, "LIMIT", 0, 64)) do
    local n, again = 1, now + LANE_RECHECK_MS
    if cap > 0 then n, again = lane_allows(p, sink, lane, now, cap, rate_interval_ms) end
    lane_unpark(p, sink, lane, n)
    -- XX: only while something of the lane is still parked (lane_unpark removed it otherwise).
    redis.call("ZADD", lanes, "XX", again, lane)
  end
end

-- A lane attempt ended and its lane's circuit is not open: start what its free slots allow.
local function lane_refill(p, sink, lane, now, cap)
  local parked = lane_key(p, sink, lane, "parked")
  if redis.call("EXISTS", parked) == 0 then return end
  lane_unpark(p, sink, lane, cap - lane_in_flight(p, sink, lane, now))
end
