"""Scenario 7 (``--scenario claims``): what claiming items costs.

Two figures, each measured against the same path without claims in the same invocation:

- **rate-bound throughput**: ``RevokeEarnOperator`` with a ledger (a SQLite file, or the
  PostgreSQL database of ``LOYALTY_BENCH_POSTGRES_URI`` when set) at the vendor's limit, claims on
  (the default) and off (``claim_lease_seconds=None``); the ratio of their earns/s end to end, and
  of their requests/s while sending (first to last request at the vendor), which leaves out the
  task's fixed start-up and end (issue 24: within 2 %, i.e. >= 0.98). The task claims its items a
  chunk at a time just ahead of sending them, so the claims' cost hides behind the pace;
- **per-item overhead**: the claim statements alone over one connection — per chunk a claim and the
  ledger look-up after it, per request a fence and a release — in microseconds per item.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow_provider_loyalty.operators._run_claims import AHEAD
from benchmarks.harness import Data, SandboxProcess, earn_rows
from benchmarks.measure import capillary_operator, invariants, ratio, row, run_operator
from benchmarks.sizes import Sizes

#: Items per request in the overhead loop (Capillary's requests carry a customer's earns: a few).
PER_REQUEST = 5
assert AHEAD % PER_REQUEST == 0  # the overhead loop claims whole requests, as the task does


def claims_cost(sizes: Sizes) -> dict[str, Any]:
    """Throughput at the vendor's limit with and without claims; the claim statements' cost per item."""
    rpm, n = sizes.rate_rpm, sizes.rate_requests
    data = Data(earns=5 * n, customers=n)
    options = ["--capillary-rpm", str(rpm), "--rate-window-seconds", str(sizes.rate_window_s)]
    options += ["--latency-ms", str(sizes.rate_latency_ms)]
    rows = earn_rows(data.generate())
    runs: dict[str, Any] = {}
    rates: dict[str, list[float]] = {"ledger, no claims": [], "ledger + claims": []}
    spans: dict[str, list[float]] = {"ledger, no claims": [], "ledger + claims": []}
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-claims-") as tmp:
        # Alternated, twice each (once at smoke size): a drift of the shared machine's load hits both sides alike.
        for rep in range(sizes.claims_reps):
            for name, lease in (("ledger, no claims", None), ("ledger + claims", 60.0)):
                ledger = _ledger_env(Path(tmp) / f"{'claims' if lease else 'plain'}-{rep}.sqlite", f"{name}{rep}")
                with SandboxProcess(data, options) as sandbox, sandbox.connected(), _ledger_connection(ledger):
                    operator = capillary_operator(
                        rows,
                        max_requests_per_minute=float(rpm),
                        ledger_conn_id="bench_ledger",
                        claim_lease_seconds=lease,
                    )
                    run = run_operator(operator, sandbox, "capillary")
                    arrivals = [
                        e["monotonic"] for e in sandbox.request_log("capillary") if e["endpoint"] == "revoke_earn"
                    ]
                # The sending span (first to last request at the vendor): the rate-bound part, without
                # the task's fixed start-up and end.
                span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
                run["sending_span_s"] = span
                spans[name].append(ratio(len(arrivals) - 1, span) or 0.0)
                runs[f"{name} #{rep + 1}"] = run
                rates[name].append(ratio(run["summary"].get("succeeded"), run["wall_s"]) or 0.0)
        rate = {name: sum(values) / len(values) for name, values in rates.items()}
        pace = {name: sum(values) / len(values) for name, values in spans.items()}
        overhead = _overhead(Path(tmp) / "overhead.sqlite", sizes.rate_requests * 20)
    throughput = ratio(rate["ledger + claims"], rate["ledger, no claims"])
    sending = ratio(pace["ledger + claims"], pace["ledger, no claims"])
    backend = "PostgreSQL" if os.environ.get("LOYALTY_BENCH_POSTGRES_URI") else "SQLite"
    rows_out = [
        row(
            "7 claims",
            f"earns/s at the vendor limit (R={rpm}/min), {backend} ledger: claims on vs off",
            rate["ledger + claims"],
            "earns/s",
            baseline=rate["ledger, no claims"],
            baseline_label="claims off",
            ratio=throughput,
            target=">= 0.98",
            met=(throughput or 0) >= 0.98,
        ),
        row(
            "7 claims",
            "requests/s while sending (first to last request at the vendor): claims on vs off",
            pace["ledger + claims"],
            "req/s",
            baseline=pace["ledger, no claims"],
            baseline_label="claims off",
            ratio=sending,
            target=">= 0.98",
            met=(sending or 0) >= 0.98,
        ),
        row(
            "7 claims",
            f"claim + look-up + fence + release added per item (SQLite, no fsync, {PER_REQUEST} items a request)",
            overhead["us_per_item"],
            "us/item",
            baseline=overhead["ledger_only_us_per_item"],
            baseline_label="ledger writes alone",
        ),
    ]
    broken = [msg for name, run in runs.items() for msg in invariants(f"claims {name}", run)]
    broken += [
        f"claims {name}: {run['summary']['claimed_elsewhere']} item(s) reported claimed elsewhere with one attempt"
        for name, run in runs.items()
        if run["summary"].get("claimed_elsewhere")
    ]
    config = {"rpm": rpm, "window_s": sizes.rate_window_s, "ledger": backend, "overhead": overhead}
    return {"config": config, "runs": runs, "rows": rows_out, "broken": broken}


def _ledger_env(path: Path, name: str) -> str:
    """The ledger connection: a fresh SQLite file, or a fresh schema of the bench PostgreSQL database."""
    import json

    uri = os.environ.get("LOYALTY_BENCH_POSTGRES_URI")
    if uri:
        import psycopg2

        schema = "bench_" + "".join(c for c in name if c.isalnum()).lower()
        with psycopg2.connect(uri) as conn, conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        return uri + ("&" if "?" in uri else "?") + f"options=-csearch_path%3D{schema}"

    return json.dumps({"conn_type": "sqlite", "host": str(path)})


@contextlib.contextmanager
def _ledger_connection(value: str) -> Iterator[None]:
    """``AIRFLOW_CONN_BENCH_LEDGER`` for the duration."""
    saved = os.environ.get("AIRFLOW_CONN_BENCH_LEDGER")
    os.environ["AIRFLOW_CONN_BENCH_LEDGER"] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("AIRFLOW_CONN_BENCH_LEDGER", None)
        else:
            os.environ["AIRFLOW_CONN_BENCH_LEDGER"] = saved


def _overhead(path: Path, items: int) -> dict[str, Any]:
    """What the claim statements add to the ledger's own writes per request: microseconds per item.

    The ledger writes an intent and an outcome per request, one transaction each. With claims,
    the same two transactions also fence and release, and each chunk of
    :data:`~airflow_provider_loyalty.operators._run_claims.AHEAD` items is claimed (one transaction)
    and looked up in the ledger again before its first request.
    Both loops run here, alternated, with ``synchronous=OFF``: the statements' own cost, not the
    disk's flush, which the two share (the claims add no commit).
    """
    from airflow_provider_loyalty.coordination import claims

    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TABLE rows (item_key VARCHAR(512), status VARCHAR(16))")
    db.execute("CREATE INDEX rows_item_key ON rows (item_key)")  # the ledger's look-ups go by key, as here
    table = "bench_claims"
    db.execute(claims.create_table_sql(table))
    db.commit()
    spent = {"ledger only": 0.0, "ledger + claims": 0.0}
    for rep in range(3):
        for name in spent:
            keys = [f"c/p/e{rep}-{name[-6:]}-{i}" for i in range(items)]
            owner = claims.Owner({"dag_id": "d", "run_id": f"r{rep}", "task_id": "t", "map_index": -1, "try_number": 1})
            started = time.perf_counter()
            for i in range(0, items, PER_REQUEST):
                chunk = keys[i : i + PER_REQUEST]
                if name == "ledger + claims" and i % AHEAD == 0:
                    ahead = keys[i : i + AHEAD]
                    claims.claim(db, table, "?", "capillary", ahead, owner, now=time.time(), lease=60.0)
                    db.commit()
                    marks = ", ".join("?" * len(ahead))
                    db.execute(f"SELECT item_key, status FROM rows WHERE item_key IN ({marks})", ahead).fetchall()
                if name == "ledger + claims":
                    claims.fence(db, table, "?", "capillary", chunk, owner.token, now=time.time(), lease=60.0)
                db.executemany("INSERT INTO rows VALUES (?, 'sending')", [(k,) for k in chunk])
                db.commit()
                db.executemany("INSERT INTO rows VALUES (?, 'succeeded')", [(k,) for k in chunk])
                if name == "ledger + claims":
                    claims.fence(db, table, "?", "capillary", chunk, owner.token, now=time.time(), lease=60.0)
                    claims.release(db, table, "?", "capillary", chunk, owner.token)
                db.commit()
            spent[name] += time.perf_counter() - started
    db.close()
    per_item = {name: 1e6 * seconds / (3 * items) for name, seconds in spent.items()}
    return {
        "items": items,
        "ledger_only_us_per_item": round(per_item["ledger only"], 2),
        "ledger_and_claims_us_per_item": round(per_item["ledger + claims"], 2),
        "us_per_item": round(per_item["ledger + claims"] - per_item["ledger only"], 2),
    }
