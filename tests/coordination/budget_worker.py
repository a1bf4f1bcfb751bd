"""One process sharing a vendor key's budget: reserve a slot, sleep until it, "send" (record the time); repeat.

``python -m tests.coordination.budget_worker BACKEND URL KEY INTERVAL SECONDS [PENALIZE_AFTER PENALTY]``
prints one JSON line: the wall-clock times of its sends and, if it opened one, the penalty window.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def open_store(backend: str, url: str, key: str) -> Any:
    from airflow_provider_loyalty.coordination import budget

    if backend == "redis":
        import redis

        return budget.RedisBudget(redis.Redis.from_url(url), key)
    import psycopg2

    return budget.PostgresBudget(lambda: psycopg2.connect(url), key)


def main(argv: list[str]) -> None:
    backend, url, key, interval, seconds = argv[:5]
    penalize_after = int(argv[5]) if len(argv) > 5 else 0
    penalty = float(argv[6]) if len(argv) > 6 else 0.0
    store = open_store(backend, url, key)
    start_line = sys.stdin.readline()  # every process starts together
    begin = float(start_line)
    time.sleep(max(0.0, begin - time.time()))
    end = begin + float(seconds)
    sends: list[float] = []
    slots: list[float] = []  # when the store said this process may send (its clock: no wake-up jitter)
    window: list[float] | None = None
    while True:
        wait = store.reserve(float(interval))
        slot = time.time() + max(wait, 0.0)
        if slot >= end:
            break
        if wait > 0:
            time.sleep(wait)
            if store.blocked_for() > 0:  # a window opened while this process slept: its slot is void
                continue
        slots.append(slot)
        sends.append(time.time())
        if penalize_after and len(sends) == penalize_after:
            opened = time.time()
            left = store.penalize(penalty)
            window = [opened, opened + left]
    store.close()
    print(json.dumps({"sends": sends, "slots": slots, "window": window}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
