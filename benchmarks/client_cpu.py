"""Scenario 3 and ``--profile``: the client's CPU per item and per request, and where it goes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from benchmarks import naive
from benchmarks.harness import Data, SandboxProcess, earn_rows, point_ids, split_customers
from benchmarks.measure import (
    capillary_operator,
    invariants,
    ratio,
    row,
    run_naive,
    run_operator,
    sandbox_credentials,
    xoxoday_operator,
)
from benchmarks.sizes import Sizes

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

    headers = {**naive.capillary_headers(till, password), "Content-Type": "application/json"}
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
    token, till, password = sandbox_credentials()
    runs: dict[str, Any] = {}
    with SandboxProcess(data) as sandbox, sandbox.connected():
        dataset = data.generate()
        ids = point_ids(dataset)
        earns, *transport_rows, rest = split_customers(
            earn_rows(dataset), sizes.cpu_customers, *[floor_customers] * len(TRANSPORTS)
        )
        del dataset
        runs["xoxoday operator"] = run_operator(xoxoday_operator(ids[k:]), sandbox, "xoxoday")
        runs["capillary operator, ~5 earns per customer"] = run_operator(
            capillary_operator(earns), sandbox, "capillary"
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
            capillary_operator(earn_rows(dense.generate())), sandbox, "capillary"
        )
    for run in runs.values():
        summary = run["summary"]
        run["cpu_ms_per_1000"] = ratio(1e6 * run["cpu_s"], summary.get("requested"))
        run["cpu_ms_per_request"] = ratio(1e3 * run["cpu_s"], summary.get("requests"))
    rows_out = []
    for name, base_name, unit in (
        ("xoxoday operator", "xoxoday naive loop", "unique_ids"),
        ("capillary operator, ~5 earns per customer", "capillary naive loop", "earns"),
        ("capillary operator, ~500 earns per customer", "capillary naive loop", "earns"),
    ):
        ours, base = runs[name], runs[base_name]
        n = ours["summary"].get("requested", 0)
        per_request = ratio(ours["summary"].get("succeeded"), ours["summary"].get("requests"))
        rows_out.append(
            row(
                "3 client CPU",
                f"{name.split(' operator')[0]}: {n} {unit}, {per_request or 0:.0f} per request",
                ours["cpu_ms_per_1000"],
                "ms/1000",
                baseline=base["cpu_ms_per_1000"],
                baseline_label="naive loop",
                ratio=ratio(ours["cpu_ms_per_1000"], base["cpu_ms_per_1000"]),
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
            ratio=ratio(ours["cpu_ms_per_request"], floor["cpu_ms_per_request"]),
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
                ratio=ratio(other["cpu_ms_per_request"], floor["cpu_ms_per_request"]),
            )
        )
    broken = [msg for name, run in runs.items() if "operator" in name for msg in invariants(name, run)]
    config = {"latency_ms": 0, "dataset": data, "dense_dataset": dense}
    return {"config": config, "runs": runs, "rows": rows_out, "broken": broken}


def profile(sizes: Sizes) -> dict[str, Any]:
    """Where the client's CPU goes, per operator, at zero latency with one request in flight.

    Each operator runs twice on disjoint halves of the data: once plain (its CPU per request in
    one thread) and once under the :class:`~benchmarks.sampler.Sampler` (the shares).
    """
    from benchmarks.sampler import Sampler

    customers = sizes.profile_customers
    data = Data(points=2 * sizes.profile_ids, earns=2 * 5 * customers, customers=2 * customers)
    reports: dict[str, Any] = {}
    with SandboxProcess(data) as sandbox, sandbox.connected():
        dataset = data.generate()
        ids = point_ids(dataset)
        earns = split_customers(earn_rows(dataset), customers)
        inputs: dict[str, list[Any]] = {
            "capillary, ~5 earns per request": [capillary_operator(half, max_concurrency=1) for half in earns],
            "xoxoday, 500 unique_ids per request": [
                xoxoday_operator(half, max_concurrency=1)
                for half in (ids[: sizes.profile_ids], ids[sizes.profile_ids :])
            ],
        }
        for name, (plain, sampled) in inputs.items():
            vendor = name.split(",")[0]
            run = run_operator(plain, sandbox, vendor)
            with Sampler() as sampler:
                run_operator(sampled, sandbox, vendor)
            per_request = ratio(1e3 * run["cpu_s"], run["summary"].get("requests"))
            reports[name] = {"cpu_ms_per_request": per_request, "run": run, "profile": sampler.report(30)}
    return reports
