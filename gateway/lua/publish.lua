-- Publish one event atomically: optionally create its ticket, store the event, create one
-- pending delivery per (sink, target), push them onto each sink's ready list, and decide
-- which sinks need a drainer woken. One round trip; all or nothing.
--
-- ARGV: 1 prefix, 2 now_ms, 3 idempotency key ("" = none), 4 idempotency ttl s,
--       5 ticket year ("" = no ticket), 6 ticket id, 7 ticket JSON, 8 event id, 9 event JSON,
--       10 event ttl s, 11 max drainers per sink, 12 drainer lease ms, 13 backlog per drainer,
--       14 n deliveries, 15 event name, then 3 per delivery: delivery id, sink, target JSON.
-- The ticket and event JSON hold PLACEHOLDER where the ticket number goes: a raw \1 can
-- never occur inside JSON text (it is escaped as \u0001), so user text cannot collide.
-- Returns {"replay", ticket JSON} or {"ok", ticket number, sink1, token1, sink2, token2, ...}
local PLACEHOLDER = "\1TKT\1"
local p = ARGV[1]
local now = tonumber(ARGV[2])
local idem = ARGV[3]

if idem ~= "" then
  local existing = redis.call("GET", idem)
  if existing then
    local ticket = redis.call("GET", p .. "ticket:" .. existing)
    if ticket then return {"replay", ticket} end
  end
end

local ticket_number = ""
local ticket_json = ARGV[7]
local event_json = ARGV[9]
if ARGV[5] ~= "" then
  local seq = redis.call("INCR", p .. "ticket_seq:" .. ARGV[5])
  ticket_number = string.format("TKT-%s-%03d", ARGV[5], seq)
  ticket_json = string.gsub(ticket_json, PLACEHOLDER, ticket_number)
  event_json = string.gsub(event_json, PLACEHOLDER, ticket_number)
  redis.call("SET", p .. "ticket:" .. ARGV[6], ticket_json)
  -- Tickets made in the same millisecond keep their creation order: the sequence breaks
  -- the tie in the score's fraction (a double still holds thousandths of a ms here).
  -- (Formatted here: Lua would print the number with 14 digits, dropping the fraction.)
  redis.call("ZADD", p .. "tickets", string.format("%d.%03d", now, seq % 1000), ARGV[6])
  if idem ~= "" then redis.call("SET", idem, ARGV[6], "EX", tonumber(ARGV[4])) end
end

local event_id = ARGV[8]
local event_name = ARGV[15]
redis.call("SET", p .. "event:" .. event_id, event_json, "EX", tonumber(ARGV[10]))
redis.call("ZADD", p .. "events", now, event_id)

local n = tonumber(ARGV[14])
local sinks, order = {}, {}
for i = 0, n - 1 do
  local id, sink, target = ARGV[16 + 3 * i], ARGV[17 + 3 * i], ARGV[18 + 3 * i]
  redis.call("HSET", p .. "delivery:" .. id,
    "id", id, "event_id", event_id, "event", event_name, "sink", sink, "target", target,
    "status", "pending", "attempts", 0, "created_at", now, "updated_at", now, "next_attempt_at", now)
  redis.call("ZADD", p .. "deliveries", now, id)
  redis.call("ZADD", p .. "sink:" .. sink .. ":deliveries", now, id)
  redis.call("RPUSH", p .. "ready:" .. sink, id)
  if not sinks[sink] then sinks[sink] = id; order[#order + 1] = sink end
end

local result = {"ok", ticket_number}
local max_drainers = tonumber(ARGV[11])
local lease = tonumber(ARGV[12])
local per_drainer = tonumber(ARGV[13])
for _, sink in ipairs(order) do
  redis.call("SADD", p .. "sinks", sink)
  local state = redis.call("HMGET", p .. "sink:" .. sink .. ":state", "paused", "circuit_open_until")
  local held = state[1] == "1" or (state[2] and tonumber(state[2]) > now)
  if not held then
    local drainers = p .. "drainers:" .. sink
    redis.call("ZREMRANGEBYSCORE", drainers, "-inf", now)
    local live = redis.call("ZCARD", drainers)
    if live == 0 or (live < max_drainers and redis.call("LLEN", p .. "ready:" .. sink) > live * per_drainer) then
      local token = "drain-" .. sinks[sink]
      redis.call("ZADD", drainers, now + lease, token)
      result[#result + 1] = sink
      result[#result + 1] = token
    end
  end
end
return result
