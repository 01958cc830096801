-- Ordered delivery per key (shared: prepended by gateway/storage/scripts.py to the scripts
-- that create, replay or end deliveries). See docs/delivery-engine.md, "Ordered delivery".
--
-- A delivery of a sink with ordering = "per_ticket" whose event has an ordering key belongs to
-- an ordering GROUP: (sink, target, key), named by order_group on its hash. The group's queue,
-- order:<sink>:<group>, lists its deliveries that have not ended, in publish order. Only the
-- head may be attempted: it is pending, retrying or in flight like any delivery, so its
-- retries, its circuit deferral and a lost lease all hold the rest back. The others are
-- "waiting": not on the ready list, each with waiting_for = the delivery just before it.
--
-- Ended means any status other than pending, retrying and waiting (delivered, failed, and
-- whatever else ends a delivery, e.g. cancelled). Whatever ends a delivery calls order_leave:
-- it is the ONE place where the next delivery of a group is released.

local function order_queue(p, sink, group)
  return p .. "order:" .. sink .. ":" .. group
end

-- Add a delivery at the tail of its group's queue. Returns the id it must wait for (the
-- previous tail), or false when it is the head (the queue was empty): then it may go now.
local function order_join(p, sink, group, id)
  local queue = order_queue(p, sink, group)
  if redis.call("RPUSH", queue, id) == 1 then return false end
  return redis.call("LINDEX", queue, -2)
end

-- A delivery ended with `status`: take it out of its group's queue. When it was the head, the
-- delivery behind it becomes pending, is pushed on the sink's ready list and records what it
-- waited for and how that ended (waited_for, waited_for_status); when it left from further
-- back (ended while waiting, e.g. cancelled), the one behind it now waits for the one before.
-- Deliveries without a group, or no longer in its queue (a replay sent out of order), are
-- left alone. Returns the released id, or false.
local function order_leave(p, id, status, now)
  local d = redis.call("HMGET", p .. "delivery:" .. id, "sink", "order_group")
  if not d[1] or not d[2] or d[2] == "" then return false end
  local queue = order_queue(p, d[1], d[2])
  local pos = redis.call("LPOS", queue, id)
  if not pos then return false end
  redis.call("LREM", queue, 1, id)
  while true do
    local next_id = redis.call("LINDEX", queue, pos)
    if not next_id then return false end
    local nkey = p .. "delivery:" .. next_id
    -- Only a waiting delivery is released; one whose hash is gone (deleted by hand) or that
    -- ended without passing here cannot hold the group: drop it and look at the next.
    if redis.call("HGET", nkey, "status") == "waiting" then
      if pos > 0 then
        redis.call("HSET", nkey, "waiting_for", redis.call("LINDEX", queue, pos - 1))
        return false
      end
      redis.call("HSET", nkey, "status", "pending", "next_attempt_at", now, "updated_at", now,
        "waited_for", id, "waited_for_status", status, "released_at", now)
      redis.call("HDEL", nkey, "waiting_for")
      redis.call("RPUSH", p .. "ready:" .. d[1], next_id)
      return next_id
    end
    redis.call("LREM", queue, 1, next_id)
  end
end
