"""The metrics reach a real StatsD socket: a task (its own process, the sandbox over loopback) with Airflow's
``[metrics] statsd_on`` (Stats initialised as Airflow's task runner does) sends counters a UDP listener reads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

TASK = r"""
import os
from airflow.sdk._shared.observability.metrics import stats
from airflow.sdk.observability.metrics import stats_utils
from airflow_provider_loyalty import sandbox as sb
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)  # as the task runner does
dataset = sb.generate_dataset(seed=4, points=30, earns=0, big_customer_earns=0, customers=1)
with sb.Sandbox(sb.SandboxConfig(), dataset) as vendor:
    os.environ.update(sb.connection_env(vendor.url))
    ids = [uid for uid, _ in dataset.point_reversals]
    s = CancelPointsOperator(task_id="m", unique_ids=ids, batch_size=10, max_failed_ratio=1.0).execute({})
    print("METRICS-RESULT", s["succeeded"], s["failed"], s["requests"], flush=True)
"""


def test_counters_reach_statsd(tmp_path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    env = {
        **os.environ,
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(listener.getsockname()[1]),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }
    task = subprocess.run([sys.executable, "-c", TASK], capture_output=True, text=True, env=env, timeout=120)
    assert task.returncode == 0, task.stderr[-2000:]
    succeeded, failed, requests = map(int, task.stdout.split("METRICS-RESULT", 1)[1].split()[:3])
    counters: dict[str, int] = {}
    try:
        while True:
            for line in listener.recv(65535).decode().splitlines():
                name, _, rest = line.partition(":")
                value, _, kind = rest.partition("|")
                if kind.startswith("c"):
                    counters[name] = counters.get(name, 0) + int(float(value))
    except TimeoutError:
        pass
    finally:
        listener.close()
    assert counters.get("airflow.loyalty.xoxoday.requests") == requests == 3
    assert counters.get("airflow.loyalty.xoxoday.items.succeeded") == succeeded > 0
    assert counters.get("airflow.loyalty.xoxoday.items.failed", 0) == failed
