"""The five scenarios of issue 6, each measured for the operators and for a baseline in one invocation.

Every scenario starts its own sandbox process (its configuration differs), loads a deterministic,
fully revocable dataset, and hands disjoint slices of it to the clients it compares, so that no
client finds another's work already done. The operators run in this process (the sandbox is in
another one, so this process's CPU time is the client's alone) except where a clean process is
the point (peak RSS, import and parse cost).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import naive
from benchmarks.harness import (
    ROOT,
    Data,
    FakeTI,
    SandboxProcess,
    earn_rows,
    load_average,
    log_file,
    point_ids,
    quiet,
    split_customers,
    timed,
    wait_for_url,
)

#: The operators' default number of requests in flight.
DEFAULT_CONCURRENCY = 8


@dataclass(frozen=True)
class Sizes:
    """How big each scenario runs; ``full`` is ``make bench``, ``quick`` and ``smoke`` shrink it."""

    # 1. rate-bound
    rate_rpm: int
    rate_window_s: float
    rate_requests: int
    rate_latency_ms: float
    rate_naive_rows: int
    # 2. latency-bound
    latency_ms: float
    latency_customers: int
    latency_ids: int
    latency_naive_rows: int
    # 3. client overhead
    cpu_ids: int
    cpu_customers: int
    cpu_dense_earns: int
    cpu_naive_rows: int
    cpu_floor_requests: int
    # 4. scale
    scale_small: int
    scale_large: int
    scale_earns_per_customer: int
    scale_dry_run_rows: int
    scale_parallel: bool
    # 5. parse
    parse_runs: int
    # profile (``--profile``)
    profile_customers: int
    profile_ids: int


SIZES = {
    "full": Sizes(
        rate_rpm=600,
        rate_window_s=10.0,
        rate_requests=250,
        rate_latency_ms=50.0,
        rate_naive_rows=40,
        latency_ms=50.0,
        latency_customers=800,
        latency_ids=200_000,
        latency_naive_rows=100,
        cpu_ids=100_000,
        cpu_customers=20_000,
        cpu_dense_earns=100_000,
        cpu_naive_rows=2000,
        cpu_floor_requests=2000,
        scale_small=100_000,
        scale_large=1_000_000,
        scale_earns_per_customer=50,
        scale_dry_run_rows=1_000_000,
        scale_parallel=False,
        parse_runs=5,
        profile_customers=4000,
        profile_ids=100_000,
    ),
    "quick": Sizes(
        rate_rpm=600,
        rate_window_s=5.0,
        rate_requests=100,
        rate_latency_ms=50.0,
        rate_naive_rows=15,
        latency_ms=50.0,
        latency_customers=300,
        latency_ids=100_000,
        latency_naive_rows=40,
        cpu_ids=20_000,
        cpu_customers=4000,
        cpu_dense_earns=20_000,
        cpu_naive_rows=500,
        cpu_floor_requests=500,
        scale_small=10_000,
        scale_large=100_000,
        scale_earns_per_customer=50,
        scale_dry_run_rows=0,
        scale_parallel=False,
        parse_runs=3,
        profile_customers=2000,
        profile_ids=50_000,
    ),
    "smoke": Sizes(
        rate_rpm=6000,
        rate_window_s=1.0,
        rate_requests=20,
        rate_latency_ms=5.0,
        rate_naive_rows=5,
        latency_ms=5.0,
        latency_customers=30,
        latency_ids=2000,
        latency_naive_rows=5,
        cpu_ids=2000,
        cpu_customers=200,
        cpu_dense_earns=2000,
        cpu_naive_rows=50,
        cpu_floor_requests=50,
        scale_small=1000,
        scale_large=5000,
        scale_earns_per_customer=50,
        scale_dry_run_rows=0,
        scale_parallel=True,
        parse_runs=1,
        profile_customers=200,
        profile_ids=2000,
    ),
}

#: Client rate as a share of the vendor's limit in the "with margin" run of scenario 1.
RATE_MARGIN = 0.98

Row = dict[str, Any]


def row(
    scenario: str,
    metric: str,
    value: float | None,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_label: str = "",
    ratio: float | None = None,
    target: str = "",
    met: bool | None = None,
) -> Row:
    """One line of the results table."""
    return {
        "scenario": scenario,
        "metric": metric,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_label": baseline_label,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# ------------------------------------------------------------------------------------------ running
def run_operator(operator: Any, sandbox: SandboxProcess, vendor: str) -> dict[str, Any]:
    """Execute ``operator`` against ``sandbox``; return time, CPU, its summary and the sandbox's counters.

    The summary is what the task would push to XCom; ``error`` is set when ``execute`` raised.
    """
    sandbox.reset_stats()
    error = None
    summary: dict[str, Any] = {}
    server_cpu = sandbox.cpu_seconds()
    with quiet(), timed() as spent:
        try:
            summary = operator.execute({"ti": FakeTI()})
        except Exception as exc:  # recorded, and reported as a broken invariant
            error = f"{type(exc).__name__}: {exc}"
    server_cpu = _difference(sandbox.cpu_seconds(), server_cpu)
    stats = sandbox.stats(vendor)
    failures = summary.pop("failures", [])
    return {
        "wall_s": spent.wall,
        "cpu_s": spent.cpu,
        "sandbox_cpu_s": server_cpu,
        "summary": summary,
        "first_failures": failures[:3],
        "error": error,
        "sandbox": {
            key: stats.get(key)
            for key in (
                "api_requests",
                "by_status",
                "rate_limited",
                "requests_in_penalty",
                "duplicate_attempts",
                "max_requests_in_window",
                "rate_limit",
                "items_received",
            )
        },
    }


def run_naive(function: Callable[..., dict[str, int]], sandbox: SandboxProcess, vendor: str, *args: Any) -> dict:
    """Run a baseline loop from :mod:`benchmarks.naive`; same shape of result as :func:`run_operator`."""
    sandbox.reset_stats()
    server_cpu = sandbox.cpu_seconds()
    with timed() as spent:
        counts = function(sandbox.url, *args)
    server_cpu = _difference(sandbox.cpu_seconds(), server_cpu)
    stats = sandbox.stats(vendor)
    return {
        "wall_s": spent.wall,
        "cpu_s": spent.cpu,
        "sandbox_cpu_s": server_cpu,
        "summary": counts,
        "sandbox": {key: stats.get(key) for key in ("api_requests", "rate_limited", "requests_in_penalty")},
    }


def invariants(name: str, run: dict[str, Any]) -> list[str]:
    """What must hold for every operator run, whatever the timings: broken ones, as messages."""
    summary, box = run["summary"], run["sandbox"]
    broken = []
    if run.get("error"):
        broken.append(f"{name}: execute raised {run['error']}")
    if not summary:
        return broken
    if summary.get("failed"):
        broken.append(f"{name}: {summary['failed']} item(s) failed, e.g. {run.get('first_failures')}")
    if summary.get("succeeded") != summary.get("requested"):
        broken.append(f"{name}: succeeded {summary.get('succeeded')} != requested {summary.get('requested')}")
    if box.get("requests_in_penalty"):
        broken.append(f"{name}: {box['requests_in_penalty']} request(s) sent inside a rate-limit penalty window")
    if box.get("duplicate_attempts"):
        broken.append(f"{name}: {box['duplicate_attempts']} item(s) sent twice")
    return broken


def warm_up() -> dict[str, Any]:
    """One tiny run of each operator, so that no scenario pays first-use costs.

    The first run in a process imports what the hooks import lazily (pydantic models, the token
    store's Variable access) and builds sessions; a task pays that once per process, whatever
    its size, so it would only blur per-request figures.
    """
    from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    data = Data(points=10, earns=10, customers=2)
    with SandboxProcess(data) as sandbox, sandbox.connected():
        dataset = data.generate()
        runs = {
            "xoxoday": run_operator(
                CancelPointsOperator(task_id="cancel_points", unique_ids=point_ids(dataset)), sandbox, "xoxoday"
            ),
            "capillary": run_operator(
                RevokeEarnOperator(task_id="revoke_earns", earns=earn_rows(dataset), max_requests_per_minute=None),
                sandbox,
                "capillary",
            ),
        }
    return {"seconds": {name: round(run["wall_s"], 3) for name, run in runs.items()}}


def _sandbox_credentials() -> tuple[str, str, str]:
    from airflow_provider_loyalty import sandbox

    return sandbox.XOXODAY_ACCESS_TOKEN, sandbox.CAPILLARY_TILL, sandbox.CAPILLARY_PASSWORD


# ------------------------------------------------------------------------------- 1. rate-bound
def rate_bound(sizes: Sizes) -> dict[str, Any]:
    """revokeEarn against a sandbox limit of R/min enforced over short sliding windows.

    Every client gets a fresh sandbox: a vendor's window must not still hold the previous client's
    requests. The operator runs twice over the same rows, once with its rate set to the vendor's
    limit and once a little under it; the naive loop pauses ``60/R`` after each row.
    """
    rpm, n = sizes.rate_rpm, sizes.rate_requests
    data = Data(earns=5 * n, customers=n)
    options = ["--capillary-rpm", str(rpm), "--rate-window-seconds", str(sizes.rate_window_s)]
    options += ["--latency-ms", str(sizes.rate_latency_ms)]
    _, till, password = _sandbox_credentials()
    from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator

    rows = earn_rows(data.generate())
    limit = math.ceil(rpm * sizes.rate_window_s / 60 - 1e-9)
    runs: dict[str, Any] = {}
    for name, client_rpm in (
        ("operator, client rate = vendor limit", float(rpm)),
        (f"operator, client rate = {RATE_MARGIN:g} x vendor limit", rpm * RATE_MARGIN),
    ):
        with SandboxProcess(data, options) as sandbox, sandbox.connected():
            operator = RevokeEarnOperator(task_id="revoke_earns", earns=rows, max_requests_per_minute=client_rpm)
            run = run_operator(operator, sandbox, "capillary")
            run["rate_limited_answers"] = _rate_limited_answers(sandbox.request_log("capillary"), limit)
        run["client_rpm"] = client_rpm
        run["ideal_s"] = run["summary"].get("requests", 0) * 60.0 / rpm
        run["efficiency"] = _ratio(run["ideal_s"], run["wall_s"])
        runs[name] = run
    with SandboxProcess(data, options) as sandbox:
        naive_rows = rows[: sizes.rate_naive_rows]
        run = run_naive(naive.revoke_earns, sandbox, "capillary", till, password, naive_rows, 60.0 / rpm)
    run["ideal_s"] = run["summary"]["requests"] * 60.0 / rpm
    run["efficiency"] = _ratio(run["ideal_s"], run["wall_s"])
    runs["naive loop, pause 60/R between rows"] = run
    at, margin, base = runs.values()
    label = f"R={rpm}/min over {sizes.rate_window_s:g} s windows"
    items = {name: _ratio(r["summary"].get("succeeded"), r["wall_s"]) for name, r in runs.items()}
    naive_items = items["naive loop, pause 60/R between rows"]
    rows_out = [
        row(
            "1 rate-bound",
            f"efficiency (N/R) / actual, client at R ({label})",
            at["efficiency"],
            "",
            baseline=base["efficiency"],
            baseline_label="naive loop",
            target=">= 0.95",
            met=(at["efficiency"] or 0) >= 0.95,
        ),
        row(
            "1 rate-bound",
            f"efficiency, client at {RATE_MARGIN:g} R",
            margin["efficiency"],
            "",
            target=">= 0.95",
            met=(margin["efficiency"] or 0) >= 0.95,
        ),
    ]
    for name, run in (("client at R", at), (f"client at {RATE_MARGIN:g} R", margin)):
        box = run["sandbox"]
        rows_out.append(
            row(
                "1 rate-bound",
                f"{name}: 429s / sent in penalty / failed (max {box['max_requests_in_window']} in a window"
                f" of {box['rate_limit']})",
                box["rate_limited"],
                f"/ {box['requests_in_penalty']} / {run['summary'].get('failed')}",
                target="0 in penalty, 0 failed",
                met=not box["requests_in_penalty"] and not run["summary"].get("failed"),
            )
        )
    rows_out.append(
        row(
            "1 rate-bound",
            "earns/s, client at R, vs naive loop",
            items["operator, client rate = vendor limit"],
            "earns/s",
            baseline=naive_items,
            baseline_label="naive loop",
            ratio=_ratio(items["operator, client rate = vendor limit"], naive_items),
        )
    )
    broken = [msg for name, run in list(runs.items())[:2] for msg in invariants(f"rate-bound {name}", run)]
    config = {"rpm": rpm, "window_s": sizes.rate_window_s, "latency_ms": sizes.rate_latency_ms, "dataset": data}
    return {"config": config, "runs": runs, "rows": rows_out, "broken": broken}


def _rate_limited_answers(log: list[dict[str, Any]], limit: int) -> list[dict[str, float]]:
    """For each 429: when it came, and over how long the ``limit`` accepted requests before it and it arrived.

    A span shorter than the window is why the vendor refused: ``limit + 1`` requests in one window.
    """
    calls = [(entry["monotonic"], entry["status"]) for entry in log if entry["endpoint"] == "revoke_earn"]
    accepted: list[float] = []
    out = []
    for arrived, status in calls:
        if status != 429:
            accepted.append(arrived)
        elif len(accepted) >= limit:
            out.append(
                {
                    "at_s": round(arrived - calls[0][0], 4),
                    "span_of_limit_plus_1_arrivals_s": round(arrived - accepted[-limit], 4),
                }
            )
    return out


# ---------------------------------------------------------------------------- 2. latency-bound
def latency_bound(sizes: Sizes) -> dict[str, Any]:
    """Both operators at default concurrency against a fixed latency and no limit; and the naive loops."""
    k = sizes.latency_naive_rows
    data = Data(
        points=sizes.latency_ids + k, earns=5 * (sizes.latency_customers + k), customers=sizes.latency_customers + k
    )
    token, till, password = _sandbox_credentials()
    from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    runs: dict[str, Any] = {}
    ideal_rps = DEFAULT_CONCURRENCY / (sizes.latency_ms / 1000.0)
    with SandboxProcess(data, ["--latency-ms", str(sizes.latency_ms)]) as sandbox, sandbox.connected():
        dataset = data.generate()
        ids = point_ids(dataset)
        earns, rest = split_customers(earn_rows(dataset), sizes.latency_customers)
        runs["capillary operator"] = run_operator(
            RevokeEarnOperator(task_id="revoke_earns", earns=earns, max_requests_per_minute=None),
            sandbox,
            "capillary",
        )
        runs["xoxoday operator"] = run_operator(
            CancelPointsOperator(task_id="cancel_points", unique_ids=ids[k:]), sandbox, "xoxoday"
        )
        runs["capillary naive loop"] = run_naive(naive.revoke_earns, sandbox, "capillary", till, password, rest[:k])
        runs["xoxoday naive loop"] = run_naive(naive.cancel_points, sandbox, "xoxoday", token, ids[:k])
    rows_out: list[Row] = []
    for vendor, unit in (("capillary", "earns/s"), ("xoxoday", "ids/s")):
        ours, base = runs[f"{vendor} operator"], runs[f"{vendor} naive loop"]
        rps = _ratio(ours["summary"].get("requests"), ours["wall_s"])
        ours["requests_per_s"] = rps
        ours["items_per_s"] = _ratio(ours["summary"].get("succeeded"), ours["wall_s"])
        base["items_per_s"] = _ratio(base["summary"]["succeeded"], base["wall_s"])
        per_request = _ratio(ours["summary"].get("succeeded"), ours["summary"].get("requests"))
        rows_out.append(
            row(
                "2 latency-bound",
                f"{vendor}: requests/s vs ideal {DEFAULT_CONCURRENCY}/{sizes.latency_ms:g} ms",
                rps,
                "req/s",
                baseline=ideal_rps,
                baseline_label="ideal",
                ratio=_ratio(rps, ideal_rps),
                target=">= 0.8",
                met=(_ratio(rps, ideal_rps) or 0) >= 0.8,
            )
        )
        rows_out.append(
            row(
                "2 latency-bound",
                f"{vendor}: items/s vs naive loop ({per_request or 0:.0f} per request)",
                ours["items_per_s"],
                unit,
                baseline=base["items_per_s"],
                baseline_label="naive loop",
                ratio=_ratio(ours["items_per_s"], base["items_per_s"]),
                target="> 20x" if vendor == "xoxoday" else "",
                met=(_ratio(ours["items_per_s"], base["items_per_s"]) or 0) > 20 if vendor == "xoxoday" else None,
            )
        )
    broken = [msg for name in ("capillary operator", "xoxoday operator") for msg in invariants(name, runs[name])]
    config = {"latency_ms": sizes.latency_ms, "concurrency": DEFAULT_CONCURRENCY, "dataset": data}
    return {"config": config, "runs": runs, "rows": rows_out, "broken": broken}


# ---------------------------------------------------------------------------- 3. client overhead
#: Rounds in which the transport-only loops of scenario 3 take turns.
TRANSPORT_ROUNDS = 4

#: Transport-only loops of scenario 3: what sending the operator's requests costs with nothing else.
TRANSPORTS = {
    "requests": "requests.Session",
    "requests-env-once": "requests.Session, trust_env=False",
    "urllib3": "urllib3.PoolManager",
}


def _transport_loop(
    url: str, rows: Sequence[tuple[int, str, str]], till: str, password: str, transport: str
) -> dict[str, int]:
    """Send the operator's requests for ``rows`` (one per customer) over ``transport``, nothing else.

    No validation, no models, no per-item results: the floor any client built on that transport
    pays per request.
    """
    import requests
    import urllib3

    secret = hashlib.md5(password.encode()).hexdigest()
    headers = {"Authorization": "Basic " + base64.b64encode(f"{till}:{secret}".encode()).decode()}
    headers["Content-Type"] = "application/json"
    grouped: dict[int, dict[str, list[str]]] = {}
    for customer, promotion, earn in rows:
        grouped.setdefault(customer, {}).setdefault(promotion, []).append(earn)
    bodies = [
        {"customerId": c, "earnRevokeDetails": [{"promotionId": p, "earnIds": e} for p, e in promos.items()]}
        for c, promos in grouped.items()
    ]
    counts = {"requested": len(rows), "succeeded": 0, "failed": 0, "requests": 0, "rate_limited": 0}
    answers: list[Any] = []
    if transport == "urllib3":
        pool = urllib3.PoolManager(maxsize=1)
        for body in bodies:
            answers.append(json.loads(pool.request("POST", url + naive.REVOKE_PATH, json=body, headers=headers).data))
        pool.clear()
    else:
        with requests.Session() as session:
            session.trust_env = transport != "requests-env-once"
            for body in bodies:
                answers.append(session.post(url + naive.REVOKE_PATH, json=body, headers=headers, timeout=30).json())
    for answer in answers:
        counts["requests"] += 1
        counts["succeeded"] += sum(len(d["revokedEarnIds"]) for d in answer["data"]["revokedDetails"])
    counts["failed"] = counts["requested"] - counts["succeeded"]
    return counts


def _best_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the least CPU per request, with every round kept under ``rounds``."""
    best = min(rounds, key=lambda run: run["cpu_s"] / max(1, run["summary"]["requests"]))
    return {**best, "rounds": [{"cpu_s": r["cpu_s"], "requests": r["summary"]["requests"]} for r in rounds]}


def client_overhead(sizes: Sizes) -> dict[str, Any]:
    """Client CPU per 1,000 items at zero latency, for both operators, against naive and transport-only loops."""
    k = sizes.cpu_naive_rows
    floor_customers = sizes.cpu_floor_requests
    customers = sizes.cpu_customers + len(TRANSPORTS) * floor_customers + k
    data = Data(points=sizes.cpu_ids + k, earns=5 * customers, customers=customers)
    dense = Data(earns=sizes.cpu_dense_earns, customers=max(1, sizes.cpu_dense_earns // 500), seed=43)
    token, till, password = _sandbox_credentials()
    from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    runs: dict[str, Any] = {}
    with SandboxProcess(data) as sandbox, sandbox.connected():
        dataset = data.generate()
        ids = point_ids(dataset)
        earns, *transport_rows, rest = split_customers(
            earn_rows(dataset), sizes.cpu_customers, *[floor_customers] * len(TRANSPORTS)
        )
        del dataset
        runs["xoxoday operator"] = run_operator(
            CancelPointsOperator(task_id="cancel_points", unique_ids=ids[k:]), sandbox, "xoxoday"
        )
        runs["capillary operator, ~5 earns per customer"] = run_operator(
            RevokeEarnOperator(task_id="revoke_earns", earns=earns, max_requests_per_minute=None),
            sandbox,
            "capillary",
        )
        # The transports take turns, a slice each per round; the best round counts (least disturbed).
        slices = {
            transport: split_customers(group, *[floor_customers // TRANSPORT_ROUNDS] * (TRANSPORT_ROUNDS - 1))
            for transport, group in zip(TRANSPORTS, transport_rows, strict=True)
        }
        rounds: dict[str, list[dict[str, Any]]] = {transport: [] for transport in TRANSPORTS}
        for index in range(TRANSPORT_ROUNDS):
            for transport in TRANSPORTS:
                rows_slice = slices[transport][index]
                run = run_naive(_transport_loop, sandbox, "capillary", rows_slice, till, password, transport)
                rounds[transport].append(run)
        for transport, label in TRANSPORTS.items():
            runs[f"capillary transport only: {label}"] = _best_round(rounds[transport])
        runs["xoxoday naive loop"] = run_naive(naive.cancel_points, sandbox, "xoxoday", token, ids[:k])
        runs["capillary naive loop"] = run_naive(naive.revoke_earns, sandbox, "capillary", till, password, rest[:k])
    with SandboxProcess(dense) as sandbox, sandbox.connected():
        runs["capillary operator, ~500 earns per customer"] = run_operator(
            RevokeEarnOperator(task_id="revoke_earns", earns=earn_rows(dense.generate()), max_requests_per_minute=None),
            sandbox,
            "capillary",
        )
    for run in runs.values():
        summary = run["summary"]
        run["cpu_ms_per_1000"] = _ratio(1e6 * run["cpu_s"], summary.get("requested"))
        run["cpu_ms_per_request"] = _ratio(1e3 * run["cpu_s"], summary.get("requests"))
    rows_out = []
    for name, base_name, unit in (
        ("xoxoday operator", "xoxoday naive loop", "unique_ids"),
        ("capillary operator, ~5 earns per customer", "capillary naive loop", "earns"),
        ("capillary operator, ~500 earns per customer", "capillary naive loop", "earns"),
    ):
        ours, base = runs[name], runs[base_name]
        n = ours["summary"].get("requested", 0)
        per_request = _ratio(ours["summary"].get("succeeded"), ours["summary"].get("requests"))
        rows_out.append(
            row(
                "3 client CPU",
                f"{name.split(' operator')[0]}: {n} {unit}, {per_request or 0:.0f} per request",
                ours["cpu_ms_per_1000"],
                "ms/1000",
                baseline=base["cpu_ms_per_1000"],
                baseline_label="naive loop",
                ratio=_ratio(ours["cpu_ms_per_1000"], base["cpu_ms_per_1000"]),
                target="< 20",
                met=(ours["cpu_ms_per_1000"] or 1e9) < 20,
            )
        )
    ours = runs["capillary operator, ~5 earns per customer"]
    floor = runs[f"capillary transport only: {TRANSPORTS['requests']}"]
    rows_out.append(
        row(
            "3 client CPU",
            "capillary: CPU per request vs requests.Session alone",
            ours["cpu_ms_per_request"],
            "ms/req",
            baseline=floor["cpu_ms_per_request"],
            baseline_label="transport only",
            ratio=_ratio(ours["cpu_ms_per_request"], floor["cpu_ms_per_request"]),
        )
    )
    for transport in ("requests-env-once", "urllib3"):
        other = runs[f"capillary transport only: {TRANSPORTS[transport]}"]
        rows_out.append(
            row(
                "3 client CPU",
                f"capillary transport only: {TRANSPORTS[transport]}",
                other["cpu_ms_per_request"],
                "ms/req",
                baseline=floor["cpu_ms_per_request"],
                baseline_label="requests.Session",
                ratio=_ratio(other["cpu_ms_per_request"], floor["cpu_ms_per_request"]),
            )
        )
    broken = [msg for name, run in runs.items() if "operator" in name for msg in invariants(name, run)]
    config = {"latency_ms": 0, "dataset": data, "dense_dataset": dense}
    return {"config": config, "runs": runs, "rows": rows_out, "broken": broken}


# ----------------------------------------------------------------------------------- 4. scale
def _child(args: list[str], sandbox: SandboxProcess | None = None) -> dict[str, Any]:
    """Run ``python -m benchmarks.child ARGS`` and return what it wrote to ``--out``.

    With ``sandbox`` (started with ``wait=False``), the child waits for it; the sandbox's CPU time
    from the moment it serves until the child ends is added as ``sandbox_cpu_s``.
    """
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-") as tmp:
        out = Path(tmp) / "out.json"
        with open(log_file("client.log"), "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.child", *args, "--out", str(out)], cwd=ROOT, stdout=log, stderr=log
            )
        server_cpu = None
        if sandbox is not None:
            try:
                sandbox.url = wait_for_url(sandbox.ready_file, sandbox.process)
            except RuntimeError:
                process.kill()
                process.wait()
                raise
            server_cpu = sandbox.cpu_seconds()
        returncode = process.wait()
        if returncode != 0 or not out.exists():
            raise RuntimeError(f"benchmarks.child {' '.join(args)} failed ({returncode}); see {log_file('client.log')}")
        result: dict[str, Any] = json.loads(out.read_text())
        if sandbox is not None:
            result["sandbox_cpu_s"] = _difference(sandbox.cpu_seconds(), server_cpu)
        return result


def _scale_run(n: int, earns_per_customer: int) -> dict[str, Any]:
    """One RevokeEarnOperator run over ``n`` rows in a fresh process, against a sandbox of its own."""
    data = Data(earns=n, customers=max(1, n // earns_per_customer))
    # The sandbox loads its dataset while the client process starts and builds its rows.
    with SandboxProcess(data, wait=False) as sandbox:
        args = ["scale", "--earns", str(n), "--customers", str(data.customers), "--seed", str(data.seed)]
        run = _child([*args, "--sandbox-ready-file", str(sandbox.ready_file)], sandbox)
        stats = sandbox.stats("capillary")
    run["sandbox"] = {key: stats.get(key) for key in ("api_requests", "requests_in_penalty", "duplicate_attempts")}
    run["error"] = None
    run["us_per_item"] = _ratio(1e6 * run["wall_s"], run["rows"])
    run["cpu_us_per_item"] = _ratio(1e6 * run["cpu_s"], run["rows"])
    return run


def scale(sizes: Sizes) -> dict[str, Any]:
    """RevokeEarnOperator over N and 10 N rows, each in a fresh process: peak RSS and time per item.

    The two runs go one after the other (they would compete for the CPU), except at smoke size.
    """
    sizes_n = (sizes.scale_small, sizes.scale_large)
    if sizes.scale_parallel:
        with ThreadPoolExecutor(max_workers=len(sizes_n)) as pool:
            done = list(pool.map(lambda n: _scale_run(n, sizes.scale_earns_per_customer), sizes_n))
    else:
        done = [_scale_run(n, sizes.scale_earns_per_customer) for n in sizes_n]
    runs: dict[str, Any] = {f"{n} rows": run for n, run in zip(sizes_n, done, strict=True)}
    if sizes.scale_dry_run_rows:
        n = sizes.scale_dry_run_rows
        run = _child(["scale", "--earns", str(n), "--dry-run"])
        runs[f"{n} rows, ~5 earns per customer, dry run"] = run
    small, large = runs[f"{sizes.scale_small} rows"], runs[f"{sizes.scale_large} rows"]
    growth = _ratio(large["us_per_item"], small["us_per_item"])
    peak = large["peak_rss_mib"] if large["peak_rss_mib"] is not None else large["ru_maxrss_mib"]
    rows_out = [
        row(
            "4 scale",
            f"peak RSS, {sizes.scale_large} earn rows (~{sizes.scale_earns_per_customer} per customer)",
            peak,
            "MiB",
            baseline=large["rss_rows_built_mib"],
            baseline_label="rows built",
            ratio=_ratio(peak, large["rss_rows_built_mib"]),
            target="< 1024",
            met=peak < 1024,
        ),
        row(
            "4 scale",
            f"time per item, {sizes.scale_large} vs {sizes.scale_small} rows",
            large["us_per_item"],
            "us/item",
            baseline=small["us_per_item"],
            baseline_label=f"{sizes.scale_small} rows",
            ratio=growth,
            target="ratio <= 1.25 (linear)",
            met=(growth or 1e9) <= 1.25,
        ),
        row(
            "4 scale",
            f"client CPU per item, {sizes.scale_large} vs {sizes.scale_small} rows",
            large["cpu_us_per_item"],
            "us/item",
            baseline=small["cpu_us_per_item"],
            baseline_label=f"{sizes.scale_small} rows",
            ratio=_ratio(large["cpu_us_per_item"], small["cpu_us_per_item"]),
        ),
    ]
    dry = [run for name, run in runs.items() if "dry run" in name]
    if dry:
        run = dry[0]
        dry_peak = run["peak_rss_mib"] if run["peak_rss_mib"] is not None else run["ru_maxrss_mib"]
        rows_out.append(
            row(
                "4 scale",
                f"peak RSS, {run['rows']} rows, ~5 per customer, dry run",
                dry_peak,
                "MiB",
                baseline=run["rss_rows_built_mib"],
                baseline_label="rows built",
                ratio=_ratio(dry_peak, run["rss_rows_built_mib"]),
                target="< 1024",
                met=dry_peak < 1024,
            )
        )
    broken = [msg for name, run in runs.items() if "dry run" not in name for msg in invariants(f"scale {name}", run)]
    config = {"latency_ms": 0, "rate_limit": None, "earns_per_customer": sizes.scale_earns_per_customer}
    return {"config": config, "runs": runs, "rows": rows_out, "broken": broken}


# ------------------------------------------------------------------------------ 5. parse cost
def parse_cost(sizes: Sizes) -> dict[str, Any]:
    """Import and DAG-file parse times in fresh interpreters (best of ``parse_runs``)."""
    samples = [_child(["parse"]) for _ in range(sizes.parse_runs)]
    best = {key: min(sample[key] for sample in samples) * 1000 for key in samples[0]}
    rows_out = [
        row(
            "5 parse",
            "import both operators on top of airflow.sdk",
            best["operators"],
            "ms",
            baseline=best["airflow.sdk"],
            baseline_label="airflow.sdk import",
            ratio=_ratio(best["operators"], best["airflow.sdk"]),
            target="< 150 added",
            met=best["operators"] < 150,
        )
    ]
    for key in sorted(best):
        if key.endswith(": DagBag"):
            name = key.removesuffix(": DagBag")
            rows_out.append(
                row(
                    "5 parse",
                    f"{name}: DagBag parse (exec alone {best[name + ': exec']:.0f} ms)",
                    best[key],
                    "ms",
                    baseline=best["common.sql operator"],
                    baseline_label="common.sql import",
                )
            )
    config = {"runs": sizes.parse_runs, "statistic": "min"}
    return {"config": config, "runs": {"best_ms": best, "samples_s": samples}, "rows": rows_out, "broken": []}


# --------------------------------------------------------------------------------------- profile
def profile(sizes: Sizes) -> dict[str, Any]:
    """Where the client's CPU goes, per operator, at zero latency with one request in flight.

    Each operator runs twice on disjoint halves of the data: once plain (its CPU per request in
    one thread) and once under the :class:`~benchmarks.sampler.Sampler` (the shares).
    """
    from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
    from benchmarks.sampler import Sampler

    customers = sizes.profile_customers
    data = Data(points=2 * sizes.profile_ids, earns=2 * 5 * customers, customers=2 * customers)
    reports: dict[str, Any] = {}
    with SandboxProcess(data) as sandbox, sandbox.connected():
        dataset = data.generate()
        ids = point_ids(dataset)
        earns = split_customers(earn_rows(dataset), customers)
        inputs: dict[str, list[Any]] = {
            "capillary, ~5 earns per request": [
                RevokeEarnOperator(task_id="revoke_earns", earns=half, max_requests_per_minute=None, max_concurrency=1)
                for half in earns
            ],
            "xoxoday, 500 unique_ids per request": [
                CancelPointsOperator(task_id="cancel_points", unique_ids=half, max_concurrency=1)
                for half in (ids[: sizes.profile_ids], ids[sizes.profile_ids :])
            ],
        }
        for name, (plain, sampled) in inputs.items():
            vendor = name.split(",")[0]
            run = run_operator(plain, sandbox, vendor)
            with Sampler() as sampler:
                run_operator(sampled, sandbox, vendor)
            per_request = _ratio(1e3 * run["cpu_s"], run["summary"].get("requests"))
            reports[name] = {"cpu_ms_per_request": per_request, "run": run, "profile": sampler.report(30)}
    return reports


def auto_rate(sizes: Sizes) -> dict[str, Any]:
    """Scenario 6, ``max_requests_per_minute="auto"`` (its sizes and figures live in :mod:`benchmarks.auto_rate`)."""
    from benchmarks import auto_rate as scenario

    mode = next(name for name, candidate in SIZES.items() if candidate is sizes)
    return scenario.scenario(mode)


SCENARIOS: dict[str, Callable[[Sizes], dict[str, Any]]] = {
    "rate": rate_bound,
    "latency": latency_bound,
    "cpu": client_overhead,
    "scale": scale,
    "parse": parse_cost,
    "auto": auto_rate,
}


def run_scenario(name: str, sizes: Sizes) -> dict[str, Any]:
    """Run one scenario and note the machine's load around it."""
    load_before = load_average()
    with timed() as spent:
        result = SCENARIOS[name](sizes)
    result["seconds"] = spent.wall
    result["load_before"] = load_before
    result["load_after"] = load_average()
    return result
