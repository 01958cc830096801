"""The answer to a request whose storage failed, for the receive endpoint (its own WSGI app)
and the Flask app's error handler alike: which 503 a Redis error is, logged once."""

from __future__ import annotations

import logging

import redis

from gateway.errors import ApiError, redis_unavailable, replication_timeout, write_unconfirmed
from gateway.storage.direct import WriteUnconfirmed
from gateway.storage.replication import ReplicationTimeout

log = logging.getLogger("gateway.web")


def storage_error(error: redis.RedisError) -> ApiError:
    """``replication_timeout`` when the replicas did not confirm a write; else
    ``storage_unavailable``, saying the write may exist when its reply was lost after it
    was sent (:class:`~gateway.storage.direct.WriteUnconfirmed`) and that nothing was
    stored otherwise."""
    if isinstance(error, ReplicationTimeout):
        log.warning("write not confirmed by replicas: %s", error)
        return replication_timeout()
    log.warning("redis unavailable: %s", type(error).__name__)
    return write_unconfirmed() if isinstance(error, WriteUnconfirmed) else redis_unavailable()
