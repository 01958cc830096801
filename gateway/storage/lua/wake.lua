-- Shared by the scripts that wake drainers (publish, requeue, sweep; prepended to them by
-- gateway/storage/scripts.py): decide whether a sink needs a drainer woken. No wake while the
-- sink is paused or its circuit is open; wake when no drainer holds a live lease, or when
-- there are fewer than max_drainers and the backlog is more than the live ones can be
-- expected to drain alone.
-- Returns the reserved token (the caller enqueues the rq drain job under it) or nil.
local function wake(p, sink, now, max_drainers, lease, per_drainer, token)
  local state = redis.call("HMGET", p .. "sink:" .. sink .. ":state", "paused", "circuit_open_until")
  if state[1] == "1" or (state[2] and tonumber(state[2]) > now) then return nil end
  local ready_len = redis.call("LLEN", p .. "ready:" .. sink)
  if ready_len == 0 then return nil end
  local drainers = p .. "drainers:" .. sink
  redis.call("ZREMRANGEBYSCORE", drainers, "-inf", now)
  local live = redis.call("ZCARD", drainers)
  if live == 0 or (live < max_drainers and ready_len > live * per_drainer) then
    redis.call("ZADD", drainers, now + lease, token)
    return token
  end
  return nil
end
