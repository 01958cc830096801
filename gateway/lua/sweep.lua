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
-- ARGV: 1 prefix, 2 now ms, 3 max drainers (the caller's own cap), 4 drainer lease ms, 5 backlog per drainer,
--       6 token prefix, 7 index cut-off ms (now - retention), 8 n configured sinks, then the
--       configured sink names, then the names of the sinks the caller already drains.
-- Returns {{sink, token}..., }, {unconfigured sink with ready work...}, n leases recovered}
local p, now = ARGV[1], tonumber(ARGV[2])
local max_drainers, lease, per_drainer = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local token_prefix = ARGV[6]
local cutoff = tonumber(ARGV[7])
local n_configured = tonumber(ARGV[8])
local configured, here = {}, {}
for i = 9, 8 + n_configured do configured[ARGV[i]] = true end
for i = 9 + n_configured, #ARGV do here[ARGV[i]] = true end
redis.call("ZREMRANGEBYSCORE", p .. "deliveries", "-inf", cutoff)

local wakes, unknown, recovered = {}, {}, 0
for index, sink in ipairs(redis.call("SMEMBERS", p .. "sinks")) do
  redis.call("ZREMRANGEBYSCORE", p .. "sink:" .. sink .. ":deliveries", "-inf", cutoff)
  local inflight = p .. "inflight:" .. sink
  local expired = redis.call("ZRANGEBYSCORE", inflight, "-inf", now)
  if #expired > 0 then
    -- LPUSH reverses, so push newest-first to keep the oldest at the head.
    for i = #expired, 1, -1 do redis.call("LPUSH", p .. "ready:" .. sink, expired[i]) end
    redis.call("ZREMRANGEBYSCORE", inflight, "-inf", now)
    recovered = recovered + #expired
  end
  if configured[sink] and not here[sink] then
    local token = wake(p, sink, now, max_drainers, lease, per_drainer, token_prefix .. index)
    if token then wakes[#wakes + 1] = {sink, token} end
  elseif not configured[sink] and redis.call("LLEN", p .. "ready:" .. sink) > 0 then
    unknown[#unknown + 1] = sink
  end
end
return {wakes, unknown, recovered}
