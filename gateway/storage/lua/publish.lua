-- Publish one event atomically: optionally create its ticket, store the event, create one
-- pending delivery per (sink, target), push them onto each sink's ready list (an ordered
-- delivery behind an earlier one of its ticket waits instead: ordering.lua, prepended), and
-- decide which sinks need a drainer woken (wake.lua, prepended). One round trip; all or nothing.
--
-- Arguments: A (PublishArgs in gateway/storage/layout.py).
-- The ticket and event JSON hold PLACEHOLDER where the ticket number goes: a raw \1 can
-- never occur inside JSON text (it is escaped as \u0001), so user text cannot collide.
-- Returns {"replay", ticket JSON} or {"ok", ticket number, sink1, token1, sink2, token2, ...}
-- or {"stale", version}: nothing written.

-- The caller routed this event by the integrations as of A.config_version. If a sink was
-- changed since, it reloads and calls again: so every event published after a change was
-- acknowledged is routed by the new configuration, in every process.
if A.config_version ~= "" then
  local current = redis.call("GET", A.prefix .. "integrations:version") or "0"
  if current ~= A.config_version then return {"stale", current} end
end

local PLACEHOLDER = "\1TKT\1"
local p = A.prefix
local now = A.now_ms
local idem = A.idempotency_key

if idem ~= "" then
  local existing = redis.call("GET", idem)
  if existing then
    local ticket = redis.call("GET", p .. "ticket:" .. existing)
    if ticket then return {"replay", ticket} end
  end
end

local ticket_number = ""
local ticket_json = A.ticket_json
local event_json = A.event_json
if A.ticket_year ~= "" then
  local seq = redis.call("INCR", p .. "ticket_seq:" .. A.ticket_year)
  ticket_number = string.format("TKT-%s-%03d", A.ticket_year, seq)
  ticket_json = string.gsub(ticket_json, PLACEHOLDER, ticket_number)
  event_json = string.gsub(event_json, PLACEHOLDER, ticket_number)
  redis.call("SET", p .. "ticket:" .. A.ticket_id, ticket_json)
  -- Tickets made in the same millisecond keep their creation order: the sequence breaks
  -- the tie in the score's fraction (a double still holds thousandths of a ms here).
  -- (Formatted here: Lua would print the number with 14 digits, dropping the fraction.)
  redis.call("ZADD", p .. "tickets", string.format("%d.%03d", now, seq % 1000), A.ticket_id)
  redis.call("HSET", p .. "ticket_numbers", ticket_number, A.ticket_id)
  if idem ~= "" then redis.call("SET", idem, A.ticket_id, "EX", A.idempotency_ttl_s) end
end

local event_id = A.event_id
redis.call("SET", p .. "event:" .. event_id, event_json, "EX", A.event_ttl_s)
redis.call("ZADD", p .. "events", now, event_id)

local sinks, order = {}, {}
local order_seq = nil
local log_entry = {event_id}
for _, d in ipairs(A.deliveries) do
  log_entry[#log_entry + 1] = d.id
  local dkey = p .. "delivery:" .. d.id
  redis.call("HSET", dkey,
    "id", d.id, "event_id", event_id, "event", A.event_name, "sink", d.sink, "target", d.target_json,
    "status", "pending", "attempts", 0, "created_at", now, "updated_at", now, "next_attempt_at", now)
  redis.call("ZADD", p .. "deliveries", now, d.id)
  redis.call("ZADD", p .. "sink:" .. d.sink .. ":deliveries", now, d.id)
  -- Ordered delivery (ordering.lua): it joins its group's queue, and goes on the ready list
  -- only when it is the head; else it waits for the delivery before it. order_seq (one per
  -- publish) orders deliveries published within the same millisecond, for batch replays.
  local waits_for = false
  if d.order_group ~= "" then
    order_seq = order_seq or redis.call("INCR", p .. "order_seq")
    redis.call("HSET", dkey, "order_group", d.order_group, "order_key", d.ordering_key, "order_seq", order_seq)
    waits_for = order_join(p, d.sink, d.order_group, d.id)
  end
  if waits_for then
    redis.call("HSET", dkey, "status", "waiting", "waiting_for", waits_for)
  else
    redis.call("RPUSH", p .. "ready:" .. d.sink, d.id)
  end
  if not sinks[d.sink] then sinks[d.sink] = d.id; order[#order + 1] = d.sink end
end

-- The ticket's log: what the console's ticket page reads (its events, each with its
-- deliveries). One entry per event; it lives as long as the events it names.
if A.ticket_ref ~= "" and (A.ticket_year ~= "" or redis.call("EXISTS", p .. "ticket:" .. A.ticket_ref) == 1) then
  local log_key = p .. "ticket:" .. A.ticket_ref .. ":log"
  redis.call("RPUSH", log_key, table.concat(log_entry, " "))
  redis.call("EXPIRE", log_key, A.event_ttl_s)
end

local result = {"ok", ticket_number}
for _, sink in ipairs(order) do
  redis.call("SADD", p .. "sinks", sink)
  local token = wake(p, sink, now, A.max_drainers, A.drainer_lease_ms, A.backlog_per_drainer, "drain-" .. sinks[sink])
  if token then
    result[#result + 1] = sink
    result[#result + 1] = token
  end
end
return result
