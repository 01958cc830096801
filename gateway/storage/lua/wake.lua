-- Shared by the scripts that wake drainers (publish, requeue, sweep; prepended to them by
-- gateway/storage/scripts.py): decide whether a sink needs a drainer woken. No wake while the
-- sink is paused or its circuit is open; wake when no drainer holds a live lease, or when
-- there are fewer than max_drainers and the backlog is more than the live ones can be
-- expected to drain alone.
-- The cheapest tests come first: publish.lua runs this once per subscribed sink of every
-- event, and while a sink is being drained (the usual case under load) the live drainers and
-- the backlog already say "no wake", so the sink's state is read only when one may be due.
-- Returns the reserved token (the caller enqueues the rq drain job under it) or nil.
local function wake(p, sink, now, max_drainers, lease, per_drainer, token)
  local drainers = p .. "drainers:" .. sink
  redis.call("ZREMRANGEBYSCORE", drainers, "-inf", now)
  local live = redis.call("ZCARD", drainers)
  if live >= max_drainers then return nil end
  local ready_len = redis.call("LLEN", p .. "ready:" .. sink)
  if ready_len == 0 or (live > 0 and ready_len <= live * per_drainer) then return nil end
  local state = redis.call("HMGET", p .. "sink:" .. sink .. ":state", "paused", "circuit_open_until")
  if state[1] == "1" or (state[2] and tonumber(state[2]) > now) then return nil end
  redis.call("ZADD", drainers, now + lease, token)
  return token
end
