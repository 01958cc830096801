-- A drainer with nothing of its sink in flight locally asks to stop. It may only stop when
-- the ready list is empty (or the sink is held: whoever un-holds it wakes a new drainer);
-- otherwise it keeps its lease and goes on. Checking and releasing in one script is what
-- makes a concurrent publish safe: publish.lua either sees this live token (and pushed work
-- that the drainer's next claim sees) or sees no token and wakes a new drainer.
--
-- Arguments: A (ReleaseArgs in gateway/storage/layout.py).
-- Returns 1 when released (stop), 0 when work remains (go on).
local p, sink, now = A.prefix, A.sink, A.now_ms
local st = redis.call("HMGET", p .. "sink:" .. sink .. ":state", "paused", "circuit_open_until")
local held = st[1] == "1" or (st[2] and tonumber(st[2]) > now)
if held or redis.call("LLEN", p .. "ready:" .. sink) == 0 then
  redis.call("ZREM", p .. "drainers:" .. sink, A.token)
  return 1
end
redis.call("ZADD", p .. "drainers:" .. sink, now + A.drainer_lease_ms, A.token)
return 0
