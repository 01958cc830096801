"""``python -m bench.profile``: where the receive path and the worker spend their time.

* receive: py-spy samples the gunicorn workers of ``gateway web`` under wrk load;
  pyinstrument profiles the receive view in-process (Flask test client), which leaves
  gunicorn out and shows the gateway's own call tree.
* worker: py-spy samples one ``gateway worker`` process draining a pre-loaded backlog.

Writes ``bench/profiles/``: py-spy's collapsed stacks (``*.collapsed``, loadable in
speedscope), a summary of each (``*-summary.txt``: time per library and the top
functions), and the pyinstrument tree. docs/performance.md discusses them.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import tempfile
from pathlib import Path

from bench import load
from bench.deliver import preload, sink_table
from bench.procs import VENV_BIN
from bench.receive import ticket_body
from bench.stack import Stack

HERE = Path(__file__).resolve().parent
OUT = HERE / "profiles"

# Which part of the stack a frame belongs to, by the path py-spy shows (first match wins).
BUCKETS = (
    ("gateway (ours)", ("gateway/", "gateway_generic_webhook/")),
    ("gunicorn", ("gunicorn/",)),
    ("flask/werkzeug", ("flask/", "werkzeug/")),
    ("marshmallow", ("marshmallow/",)),
    ("redis-py", ("redis/",)),
    ("rq", ("rq/",)),
    ("prometheus_client", ("prometheus_client/",)),
    ("urllib3/http.client", ("urllib3/", "http/client.py")),
    ("json", ("json/",)),
    ("logging", ("logging/",)),
    ("threading/queue", ("threading.py", "queue.py", "concurrent/")),
    ("imports", ("<frozen importlib",)),
    ("socket/selectors/ssl", ("socket.py", "selectors.py", "ssl.py")),
)


def _bucket(frame: str) -> str:
    for name, needles in BUCKETS:
        if any(n in frame for n in needles):
            return name
    return "other"


def summarize(collapsed: str, top: int = 25) -> str:
    """Own time per library (the library of the innermost frame, so waiting on a socket
    counts where it waits) and the functions with the most own and inclusive time, from
    py-spy's collapsed stacks."""
    total = 0
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    by_bucket: collections.Counter[str] = collections.Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        by_bucket[_bucket(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples\n"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    lines = [f"{total} samples", "", "own time by library:"]
    lines += [f"  {pct(n)}  {name}" for name, n in by_bucket.most_common()]
    lines += ["", "top functions by own time:"]
    lines += [f"  {pct(n)}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "top functions by inclusive time:"]
    lines += [f"  {pct(n)}  {frame}" for frame, n in inclusive.most_common(top)]
    ours = [(f, n) for f, n in inclusive.most_common() if _bucket(f) == "gateway (ours)"]
    lines += ["", "the gateway's own functions by inclusive time:"]
    lines += [f"  {pct(n)}  {frame}" for frame, n in ours[: top * 2]]
    return "\n".join(lines) + "\n"


def py_spy(pid: int, seconds: float, output: Path, subprocesses: bool = False) -> subprocess.Popen[bytes]:
    """Start ``py-spy record`` on ``pid`` (collapsed stacks, function-level, no line numbers)."""
    args = [
        str(VENV_BIN / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--nolineno",
        "--rate",
        "200",
        "--nonblocking",
        # Only samples holding the GIL: where Python spends CPU, not where it waits on sockets.
        "--gil",
        "--duration",
        str(int(seconds)),
        "--output",
        str(output),
    ]
    if subprocesses:
        args.append("--subprocesses")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(spy: subprocess.Popen[bytes], output: Path, name: str) -> None:
    _, err = spy.communicate(timeout=120)
    if not output.exists():
        raise RuntimeError(f"py-spy wrote nothing for {name}: {err.decode(errors='replace')[-500:]}")
    (OUT / f"{name}-summary.txt").write_text(summarize(output.read_text()), encoding="utf-8")


def profile_receive(stack: Stack, seconds: float) -> None:
    """py-spy over the gunicorn workers while wrk sends signed creates."""
    sink = stack.start_sink("profile-sink")
    config = stack.write_config("profile-receive", [sink_table("fast", sink)])
    url, web = stack.start_web(config)
    body, signature = ticket_body(stack.run_dir)
    load.post_load(url, body, signature, 16, 1)
    output = OUT / "receive.collapsed"
    spy = py_spy(web.pid, seconds, output, subprocesses=True)
    load.post_load(url, body, signature, 16, seconds + 1)
    _finish(spy, output, "receive")
    stack.stop(web)


def profile_worker(stack: Stack, count: int, seconds: float) -> None:
    """py-spy over one worker process draining ``count`` pre-loaded deliveries."""
    stack.flush()
    sink = stack.start_sink("profile-worker-sink")
    config = stack.write_config("profile-worker", [sink_table("fast", sink)])
    preload(config, count)
    (worker,) = stack.start_workers(config, 1)
    sink.wait_for(min(200, count), timeout=120)  # past start-up: profile the steady state only
    output = OUT / "worker.collapsed"
    spy = py_spy(worker.pid, seconds, output)
    _finish(spy, output, "worker")
    stack.stop(worker)


def pyinstrument_receive(stack: Stack, requests_count: int) -> None:
    """pyinstrument's call tree of ``requests_count`` receives through the Flask test client."""
    from pyinstrument import Profiler

    from gateway.web.app import create_app

    sink = stack.start_sink("profile-inproc-sink")
    config = stack.write_config("profile-inproc", [sink_table("fast", sink)])
    app = create_app(config_path=config)
    client = app.test_client()
    body, signature = ticket_body(stack.run_dir)
    data = body.read_bytes()
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": signature}
    for _ in range(50):  # warm caches and pools first
        client.post("/api/webhooks/receive", data=data, headers=headers)
    profiler = Profiler(interval=0.001)
    profiler.start()
    for _ in range(requests_count):
        answer = client.post("/api/webhooks/receive", data=data, headers=headers)
        assert answer.status_code == 201, answer.get_data(as_text=True)
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    (OUT / "receive-pyinstrument.txt").write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--only", default="receive,pyinstrument,worker")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    subprocess.run(["sh", str(HERE / "setup.sh"), "--profile"], check=True)
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gateway-profile-") as tmp, Stack(Path(tmp)) as stack:
        if "receive" in only:
            profile_receive(stack, args.seconds)
        if "pyinstrument" in only:
            pyinstrument_receive(stack, 1000)
        if "worker" in only:
            profile_worker(stack, args.deliveries, args.seconds)
    for path in sorted(OUT.glob("*.txt")):
        print(f"== {path.relative_to(HERE.parent)}")
        print(path.read_text()[:3000])


if __name__ == "__main__":
    main()
