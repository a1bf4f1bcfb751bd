"""The scenarios by name, each measured for the operators and for a baseline in one invocation.

Every scenario starts its own sandbox process (its configuration differs), loads a deterministic,
fully revocable dataset, and hands disjoint slices of it to the clients it compares, so that no
client finds another's work already done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.auto_rate import auto_rate
from benchmarks.claims_cost import claims_cost
from benchmarks.client_cpu import client_overhead
from benchmarks.harness import load_average, timed
from benchmarks.latency_bound import latency_bound
from benchmarks.page_cost import page_cost
from benchmarks.parse_cost import parse_cost
from benchmarks.rate_bound import rate_bound
from benchmarks.scale import scale
from benchmarks.sizes import Sizes

SCENARIOS: dict[str, Callable[[Sizes], dict[str, Any]]] = {
    "rate": rate_bound,
    "latency": latency_bound,
    "cpu": client_overhead,
    "scale": scale,
    "parse": parse_cost,
    "auto": auto_rate,
    "claims": claims_cost,
    "page": page_cost,
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
