"""The shared rate budget's stores, measured: per-request overhead, and fairness across processes.

``.venv/bin/python -m benchmarks.budget`` starts a redis-server of its own on a free loopback port
and uses the PostgreSQL server of ``LOYALTY_TEST_POSTGRES_URI`` (skipped when unset). For each
store:

* **overhead**: one process reserving slots back to back (interval 0), the time of one reservation
  (median and 99th percentile), i.e. what the shared budget adds to every vendor request;
* **fairness**: 4 processes sharing one key at 100 requests/s for 4 s: the combined rate over the
  target, the busiest second, and the smallest process's share over the largest's.

For comparison the same overhead for ``limits``' moving window on the same Redis (a hit and, when it
is refused, the window's reset time: a retry loop, as that library offers no reservation).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _overhead(reserve: Any, n: int = 2000) -> dict[str, float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        reserve()
        times.append(time.perf_counter() - t)
    times.sort()
    return {"median_us": round(statistics.median(times) * 1e6, 1), "p99_us": round(times[int(n * 0.99)] * 1e6, 1)}


def _fairness(backend: str, url: str, processes: int = 4, interval: float = 0.01, seconds: float = 4.0) -> dict:
    key = f"bench:{uuid.uuid4().hex}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.coordination.budget_worker", backend, url, key, str(interval), str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for _ in range(processes)
    ]
    time.sleep(3.0)
    start = time.time() + 0.5
    for w in workers:
        assert w.stdin is not None
        w.stdin.write(f"{start}\n")
        w.stdin.flush()
    results = [json.loads(w.communicate(timeout=60)[0]) for w in workers]
    sends = sorted(t for r in results for t in r["sends"])
    shares = [len(r["sends"]) for r in results]
    busiest = max(sum(1 for u in sends if t <= u < t + 1.0) for t in sends)
    return {
        "combined_over_target": round(len(sends) * interval / seconds, 3),
        "busiest_second": busiest,
        "per_second_target": round(1 / interval),
        "min_share_over_max": round(min(shares) / max(shares), 3),
        "shares": shares,
    }


def main() -> None:
    import redis

    from airflow_provider_loyalty.coordination.budget import MemoryBudget, PostgresBudget, RedisBudget

    out: dict[str, Any] = {"load_before": os.getloadavg()}
    memory = MemoryBudget()
    out["memory"] = {"overhead": _overhead(lambda: memory.reserve(0.0))}
    binary = shutil.which("redis-server")
    server = None
    if binary:
        port = _free_port()
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tempfile.gettempdir()],
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        store = RedisBudget(client, f"bench:{uuid.uuid4().hex}")
        out["redis"] = {"overhead": _overhead(lambda: store.reserve(0.0)), "fairness": _fairness("redis", url)}
        from limits import RateLimitItemPerSecond
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        limiter = MovingWindowRateLimiter(storage_from_string(url))
        item = RateLimitItemPerSecond(1_000_000)

        def moving_window() -> None:
            if not limiter.hit(item, "bench"):
                limiter.get_window_stats(item, "bench")

        out["limits_moving_window_redis"] = {"overhead": _overhead(moving_window)}
    uri = os.environ.get("LOYALTY_TEST_POSTGRES_URI")
    if uri:
        import psycopg2

        pg = PostgresBudget(lambda: psycopg2.connect(uri), f"bench:{uuid.uuid4().hex}")
        out["postgres"] = {"overhead": _overhead(lambda: pg.reserve(0.0)), "fairness": _fairness("postgres", uri)}
        pg.close()
    if server is not None:
        server.terminate()
        server.wait(10)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
