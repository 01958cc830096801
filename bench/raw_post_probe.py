"""The physical limit of delivery on this machine: ``procs`` processes each posting a signed
envelope in a urllib3 keep-alive loop to a bench sink (no Redis, no gateway).

``python -m bench.raw_post_probe [--procs 2] [--count 5000]`` starts its own bench sink and
prints posts/s over all processes and the senders' CPU per post (µs). A probe for paired
before/after runs of the delivery engine; the bench's own ``raw_post_rps`` (issue #20) is
the figure of record.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
import uuid

import urllib3

from gateway import signing

SECRET = "raw-probe-secret-raw-probe-secret-0123"


def _post_loop(url: str, count: int, start: multiprocessing.synchronize.Event, out: multiprocessing.Queue) -> None:
    pool = urllib3.PoolManager(maxsize=1)
    body = json.dumps({"event": "ticket.created", "timestamp": "2026-01-01T00:00:00.000Z",
                       "data": {"ticket": {"id": str(uuid.uuid4()), "subject": "Cannot export the monthly report",
                                           "message": "The export button does nothing since this morning; we "
                                                      "need the report today."}}},
                      separators=(",", ":")).encode()
    start.wait()
    cpu0 = os.times()
    for _ in range(count):
        delivery = f"dlv_{uuid.uuid4().hex}"
        headers = {"Content-Type": "application/json", "X-Webhook-Event": "ticket.created",
                   "X-Webhook-Delivery": delivery,
                   **signing.signature_headers(body, delivery, [SECRET])}
        response = pool.request("POST", url, body=body, headers=headers, retries=False)
        assert response.status == 200
    cpu1 = os.times()
    out.put((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--count", type=int, default=5000, help="posts per process")
    args = parser.parse_args()
    sink = subprocess.Popen([sys.executable, "-m", "bench.sink"], stdout=subprocess.PIPE)
    try:
        line = sink.stdout.readline().decode() if sink.stdout else ""
        port = int(line.split()[1])
        url = f"http://127.0.0.1:{port}/hook"
        start = multiprocessing.Event()
        out: multiprocessing.Queue = multiprocessing.Queue()
        procs = [multiprocessing.Process(target=_post_loop, args=(url, args.count, start, out))
                 for _ in range(args.procs)]
        for proc in procs:
            proc.start()
        time.sleep(0.5)
        began = time.monotonic()
        start.set()
        cpu = sum(out.get() for _ in procs)
        elapsed = time.monotonic() - began
        for proc in procs:
            proc.join()
        total = args.procs * args.count
        print(json.dumps({"raw_post_rps": round(total / elapsed, 1),
                          "raw_cpu_us_per_post": round(1e6 * cpu / total), "procs": args.procs}))
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
