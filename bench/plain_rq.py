"""The baseline for delivery throughput: the plain rq recipe most projects start from.

One rq job per delivery (``bench.rq_job.deliver``: sign the envelope, ``requests.post``),
run by rq's forking ``Worker`` (a fork per job): what the gateway's worker is compared
against (``deliver_ratio``).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any

from rq import Queue

from bench.procs import VENV_BIN
from bench.report import progress
from bench.rq_job import deliver
from bench.stack import SECRET, SinkHandle, Stack, watch_drain

QUEUE = "plain"


def envelope(index: int) -> str:
    """A ticket.created envelope like the gateway sends."""
    return json.dumps(
        {
            "event": "ticket.created",
            "timestamp": "2026-01-01T00:00:00.000Z",
            "data": {
                "ticket": {
                    "id": str(uuid.uuid4()),
                    "ticket_number": f"TKT-2026-{index:03d}",
                    "subject": "Cannot export the report",
                    "message": "The export button does nothing since this morning.",
                    "status": "new",
                    "priority": "high",
                    "customer_email": "bench@example.com",
                    "source": "webhook",
                }
            },
        },
        separators=(",", ":"),
    )


def plain_rq_rps(stack: Stack, sink: SinkHandle, count: int, workers: int, timeout: float) -> dict[str, Any]:
    """Deliveries/s of ``workers`` forking rq workers over ``count`` pre-loaded jobs,
    first to last arrival at the sink."""
    assert stack.redis is not None
    stack.flush()
    sink.reset()
    queue = Queue(QUEUE, connection=stack.redis)
    with stack.redis.pipeline() as pipe:
        for i in range(count):
            queue.enqueue(deliver, sink.url, envelope(i), SECRET, f"plain_{i}", pipeline=pipe, result_ttl=0)
        pipe.execute()
    progress(f"{count} plain rq jobs enqueued; starting {workers} forking rq workers")
    started = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = [
        stack.procs.start(
            f"rq-worker-{i}",
            [
                str(VENV_BIN / "rq"),
                "worker",
                "--burst",
                "--quiet",
                "--worker-class",
                "rq.worker.Worker",
                "--url",
                stack.redis_url,
                QUEUE,
            ],
        )
        for i in range(workers)
    ]
    try:
        drain = watch_drain(stack, sink, count, procs, timeout)
    finally:
        stack.stop(*procs)
    return {
        "plain_rq_rps": drain.rps,
        "plain_rq_jobs": count,
        "plain_rq_wall_s": round(time.monotonic() - started, 2),
        "plain_rq_cpu_us_per_delivery": drain.cpu_us,
    }
