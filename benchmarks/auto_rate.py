"""Scenario 6 (issues 15, 25): ``max_requests_per_minute="auto"`` against a limit the client is not told.

For each limit R (100, 600, 1,000/min) enforced over sliding 60 s and 10 s windows, one sandbox
limits both vendors at R: Capillary answers 429 + ``Retry-After`` (1 s penalty, the sandbox's
default), Xoxoday ``penaltySeconds`` (60 s, its documented figure). Both operators run at once
(independent limiters), one item per request, on more items than fit in the run, for ``seconds``:

* ``auto, first run``: nothing learned; the run is told the vendor's window (``window_seconds`` in
  its learned state), not its limit;
* ``auto, learned run``: a fresh sandbox (a day later: the vendor's windows are empty), starting from
  what the first run stored;
* ``auto, first run, window untold``: nothing learned at all (reported, no target: one rate-limit
  answer cannot tell a 10 s window from a minute, so what it learns keeps within both).

Figures per vendor, from the sandbox's request log (arrival times, status), never from the client:

* ``limited``: rate-limit answers in the run (those inside a penalty included);
* ``share_after_penalty``: requests accepted from the end of the first penalty (its first refused
  request's arrival + the penalty) to the end of sending (the moment the run is stopped,
  ``seconds`` after the operators started), ÷ (R × that time); the tail is included;
* ``share``: the same from the run's first request (the learned run's figure);
* ``in_penalty``: requests that arrived inside a penalty window (the sandbox's own counter).

At ``seconds`` the operators' pacers stop every thread at its next slot (in-flight answers still
land; the items left are not sent).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.harness import Data, FakeTI, SandboxProcess, earn_rows, point_ids, quiet
from benchmarks.measure import capillary_operator, row, xoxoday_operator
from benchmarks.sizes import AutoSizes, Sizes

FIRST, LEARNED, UNTOLD = "auto, first run", "auto, learned run", "auto, first run, window untold"
VARIANTS = (FIRST, LEARNED, UNTOLD)
VENDORS = ("capillary", "xoxoday")


def _measure(log: list[dict[str, Any]], rpm: int, stopped: float, penalty: float) -> dict[str, Any]:
    """The run's figures from one vendor's request log (see the module documentation).

    :param stopped: when the run was stopped (``time.monotonic()``, the sandbox's clock: same host).
    """
    calls = [e for e in log if "token" not in e["endpoint"]]
    if not calls:
        return {"requests": 0, "accepted": 0, "limited": 0, "share": 0.0, "share_after_penalty": None}
    start = calls[0]["monotonic"]
    inside = [e for e in calls if e["monotonic"] <= stopped]
    end = stopped  # time the run did not send, up to its stop, counts
    accepted = [e["monotonic"] for e in inside if not e["rate_limited"]]
    refused = [e["monotonic"] for e in calls if e["rate_limited"]]
    figures: dict[str, Any] = {
        "requests": len(inside),
        "accepted": len(accepted),
        "limited": len(refused),
        "seconds": round(end - start, 1),
        "share": _share(accepted, start, end, rpm),
        "share_after_penalty": None,
        "first_limited_at": round(refused[0] - start, 1) if refused else None,
    }
    if refused:
        after = refused[0] + penalty  # the sandbox's penalty runs from the refused request's arrival
        figures["penalty_end_at"] = round(after - start, 1)
        figures["share_after_penalty"] = _share(accepted, after, end, rpm)
    return figures


def _share(accepted: list[float], since: float, end: float, rpm: int) -> float | None:
    """Requests accepted in ``(since, end]`` ÷ what R allows over that time (``None`` for no time)."""
    if end - since <= 0:
        return None
    return round(sum(since < t <= end for t in accepted) / (rpm * (end - since) / 60.0), 3)


def _one_run(
    sizes: AutoSizes, rpm: int, window: float, pace: float | str, stores: dict[str, Any] | None, data: Data
) -> dict[str, dict[str, Any]]:
    """Both operators at ``pace`` against a fresh sandbox limited at ``rpm``, for ``sizes.seconds``."""
    penalties = {"capillary": 1.0, "xoxoday": sizes.xoxoday_penalty}
    options = ["--capillary-rpm", str(rpm), "--xoxoday-rpm", str(rpm), "--rate-window-seconds", str(window)]
    options += ["--xoxoday-penalty-seconds", str(sizes.xoxoday_penalty), "--capillary-penalty-seconds", "1"]
    options += ["--latency-ms", str(sizes.latency_ms)]
    dataset = data.generate()
    out: dict[str, dict[str, Any]] = {}
    with SandboxProcess(data, options) as sandbox:
        run_id = _next_id()
        conn = {v: f"{v}_auto_bench_{run_id}" for v in VENDORS}
        env = {
            name.replace("_DEFAULT", f"_AUTO_BENCH_{run_id}"): value for name, value in sandbox.connections().items()
        }
        os.environ.update(env)  # one process, many sandboxes at once: a connection id per run

        def hook_params(vendor: str) -> dict[str, Any]:
            return {"rate_store": stores[vendor]} if stores is not None else {}

        operators: dict[str, Any] = {
            "capillary": capillary_operator(
                earn_rows(dataset),
                max_requests_per_minute=pace,
                hook_params=hook_params("capillary"),
                capillary_conn_id=conn["capillary"],
                max_failed_ratio=1.0,
            ),
            "xoxoday": xoxoday_operator(
                point_ids(dataset),
                batch_size=1,
                max_requests_per_minute=pace,
                hook_params=hook_params("xoxoday"),
                xoxoday_conn_id=conn["xoxoday"],
                max_failed_ratio=1.0,
            ),
        }
        results: dict[str, Any] = {}

        def execute(vendor: str) -> None:
            ti = FakeTI()
            try:
                results[vendor] = operators[vendor].execute({"ti": ti})
            except Exception:  # noqa: BLE001 - the sandbox is stopped under it at the end
                results[vendor] = ti.pushed.get("return_value")

        threads = [threading.Thread(target=execute, args=(v,), daemon=True) for v in VENDORS]
        for thread in threads:
            thread.start()
        threads[0].join(sizes.seconds)
        for operator in operators.values():
            # Time is up: the pacer's own "stop sending" path (every thread stops at its next slot,
            # in-flight answers still land, the items left are not sent). A run that went on would
            # send into whatever sandbox later took its port.
            operator.hook.pacer.gave_up = "the benchmark's time is up"
        stopped = time.monotonic()
        stats = {v: sandbox.stats(v) for v in VENDORS}
        logs = {v: sandbox.request_log(v) for v in VENDORS}
        for thread in threads:
            thread.join(sizes.xoxoday_penalty + 60)
    for vendor in VENDORS:
        figures = _measure(logs[vendor], rpm, stopped, penalties[vendor])
        figures["in_penalty"] = stats[vendor].get("requests_in_penalty")
        summary = results.get(vendor) or {}
        figures["pace"] = summary.get("pace")
        out[vendor] = figures
    return out


_IDS = iter(range(1, 1_000_000))
_IDS_LOCK = threading.Lock()


def _next_id() -> int:
    with _IDS_LOCK:
        return next(_IDS)


def _combination(sizes: AutoSizes, rpm: int, window: float) -> dict[str, Any]:
    """The variants of one (limit, window): first then learned run, and a first run not told the window."""
    from airflow_provider_loyalty.hooks._auto_rate import LearnedRate, MemoryRateStore

    n = int(rpm * sizes.seconds / 60.0 * 1.5) + 10
    data = Data(points=n, earns=n, customers=n)
    told = {vendor: MemoryRateStore(LearnedRate(window_seconds=window)) for vendor in VENDORS}
    untold = {vendor: MemoryRateStore() for vendor in VENDORS}
    runs: dict[str, Any] = {}

    def autos() -> None:
        runs[FIRST] = _one_run(sizes, rpm, window, "auto", told, data)
        runs["learned"] = {v: s.learned.to_json() if s.learned else None for v, s in told.items()}
        runs[LEARNED] = _one_run(sizes, rpm, window, "auto", told, data)

    def untold_run() -> None:
        runs[UNTOLD] = _one_run(sizes, rpm, window, "auto", untold, data)
        runs["learned, window untold"] = {v: s.learned.to_json() if s.learned else None for v, s in untold.items()}

    with ThreadPoolExecutor(2) as pool:
        for job in [pool.submit(autos), pool.submit(untold_run)]:
            job.result()
    return runs


def _rows(label: str, vendor: str, runs: dict[str, Any], sizes: AutoSizes) -> list[dict[str, Any]]:
    """The restated targets of one (limit, window, vendor) case."""
    style = "429 + Retry-After 1 s" if vendor == "capillary" else f"penaltySeconds {sizes.xoxoday_penalty:g}"
    where = f"{label}, {vendor} ({style})"
    first, learned, untold = runs[FIRST][vendor], runs[LEARNED][vendor], runs[UNTOLD][vendor]
    after = first["share_after_penalty"]
    return [
        row(
            "6 auto rate", f"first run: 429s ({where})", first["limited"], "", target="<= 1", met=first["limited"] <= 1
        ),
        row(
            "6 auto rate",
            f"first run: share of R after the penalty ({where})",
            after if after is not None else first["share"],
            "" if after is not None else "(no 429: the whole run)",  # a run too short to meet the limit
            baseline=untold["share_after_penalty"],
            baseline_label="window untold",
            target=">= 0.95",
            met=after >= 0.95 if after is not None else None,
        ),
        row(
            "6 auto rate",
            f"learned run: share of R / 429s ({where})",
            learned["share"],
            f"/ {learned['limited']}",
            baseline=untold["limited"],
            baseline_label="429s, window untold",
            target=">= 0.95 / 0",
            met=learned["share"] is not None and learned["share"] >= 0.95 and learned["limited"] == 0,
        ),
        row(
            "6 auto rate",
            f"sent inside a penalty window, first / learned run ({where})",
            first["in_penalty"],
            f"/ {learned['in_penalty']}",
            baseline=untold["in_penalty"],
            baseline_label="window untold",
            target="0",
            met=not first["in_penalty"] and not learned["in_penalty"],
        ),
    ]


def auto_rate(all_sizes: Sizes) -> dict[str, Any]:
    """Run every (limit, window) at once (their sandboxes are separate), then build the table rows."""
    sizes = all_sizes.auto
    combos = [(rpm, window) for rpm in sizes.limits for window in sizes.windows]
    with quiet(), ThreadPoolExecutor(len(combos)) as pool:
        futures = {combo: pool.submit(_combination, sizes, *combo) for combo in combos}
        results = {f"R={rpm}/min, {window:g} s windows": futures[(rpm, window)].result() for rpm, window in combos}
    rows_out = []
    broken = []
    for label, runs in results.items():
        for vendor in VENDORS:
            rows_out.extend(_rows(label, vendor, runs, sizes))
            for name in VARIANTS:  # an invariant whatever we were told
                sent = runs[name][vendor]["in_penalty"]
                if sent:
                    broken.append(
                        f"auto rate {label}, {vendor}, {name}: {sent} request(s) sent inside a penalty window"
                    )
    config = {"sizes": sizes, "variants": VARIANTS}
    return {"config": config, "runs": results, "rows": rows_out, "broken": broken}
