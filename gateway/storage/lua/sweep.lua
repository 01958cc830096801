-- The sweeper's pass over every sink that ever had a delivery (wake.lua is prepended):
-- move expired in-flight leases (a killed or stuck worker's deliveries) back to the FRONT of
-- the ready list, and reserve a drainer token, for the calling process to run itself, for
-- each sink it is not draining yet that needs one by the wake rule: ready work and no live
-- drainer (a lost wake-up, a dead worker), or a backlog bigger than the live drainers can be
-- expected to drain alone (so an idle process joins a busy one: wake-up jobs may all have
-- gone to the busy one). Sinks not in the configured list are reported so the caller can
-- fail their deliveries.
--
-- Index entries older than the retention period are trimmed (their deliveries have expired),
-- so the delivery log's indexes stay bounded even when nobody reads them.
--
-- Fan-out sinks (lanes.lua, prepended): each target with parked deliveries that is due gets one
-- moved back (a backstop: the end of a cool-down also has a wake-up job, and a freed slot is
-- refilled by finish.lua), and targets whose circuit opened longer ago than the retention
-- period leave the index of open circuits.
--
-- Arguments: A (SweepArgs in gateway/storage/layout.py).
-- Returns {{sink, token}..., }, {unconfigured sink with ready work...}, n leases recovered}
local p, now = A.prefix, A.now_ms
local configured, here = {}, {}
for _, sink in ipairs(A.configured) do configured[sink] = true end
for _, sink in ipairs(A.draining) do here[sink] = true end
redis.call("ZREMRANGEBYSCORE", p .. "deliveries", "-inf", A.index_cutoff_ms)
-- The events index too: its events have expired (SET EX in publish.lua), and left alone it
-- grew ~120 bytes per event for ever (bench retention_memory_ratio). Only a lookup by event
-- id reads it, and that finds the event's deliveries in the index trimmed just above.
redis.call("ZREMRANGEBYSCORE", p .. "events", "-inf", A.index_cutoff_ms)

local wakes, unknown, recovered = {}, {}, 0
for index, sink in ipairs(redis.call("SMEMBERS", p .. "sinks")) do
  redis.call("ZREMRANGEBYSCORE", p .. "sink:" .. sink .. ":deliveries", "-inf", A.index_cutoff_ms)
  redis.call("ZREMRANGEBYSCORE", p .. "sink:" .. sink .. ":open_lanes", "-inf", A.index_cutoff_ms)
  lanes_due(p, sink, now, 0, 0)
  local inflight = p .. "inflight:" .. sink
  local expired = redis.call("ZRANGEBYSCORE", inflight, "-inf", now)
  if #expired > 0 then
    -- LPUSH reverses, so push newest-first to keep the oldest at the head.
    for i = #expired, 1, -1 do redis.call("LPUSH", p .. "ready:" .. sink, expired[i]) end
    redis.call("ZREMRANGEBYSCORE", inflight, "-inf", now)
    recovered = recovered + #expired
  end
  if configured[sink] and not here[sink] then
    local token = wake(p, sink, now, A.max_drainers, A.drainer_lease_ms, A.backlog_per_drainer, A.token_prefix .. index)
    if token then wakes[#wakes + 1] = {sink, token} end
  elseif not configured[sink] and redis.call("LLEN", p .. "ready:" .. sink) > 0 then
    unknown[#unknown + 1] = sink
  end
end
return {wakes, unknown, recovered}
