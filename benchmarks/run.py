"""``make bench``: run the benchmark scenarios of issue 6, print one table, write it as JSON.

Each scenario starts the vendor sandbox in a separate process, runs the provider's operators and a
baseline (the naive per-row loop of :mod:`benchmarks.naive`, a transport-only loop, the ideal
figure, or a bare import) in the same invocation, and reports the figures with their ratios.
Targets are reported, never asserted; the invariants (no item failed, every requested item
succeeded, nothing sent inside a rate-limit penalty window, nothing sent twice) make the run exit 1.

    .venv/bin/python benchmarks/run.py                    # everything (what make bench runs)
    .venv/bin/python benchmarks/run.py --quick            # smaller sizes, about a minute
    .venv/bin/python benchmarks/run.py --scenario cpu --profile
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # ``python benchmarks/run.py``: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402
from benchmarks.harness import RESULTS, ROOT, git_commit, load_average, machine  # noqa: E402

os.environ.setdefault("AIRFLOW_HOME", str(RESULTS / "airflow-home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from benchmarks import measure, scenarios  # noqa: E402
from benchmarks.client_cpu import profile as cpu_profile  # noqa: E402
from benchmarks.sizes import SIZES  # noqa: E402

DEFAULT_OUT = RESULTS / "latest.json"


def _number(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 100):
        text = f"{int(value)}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip()


def _ratio_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def table(rows: list[dict[str, Any]]) -> str:
    """Render the result rows as a fixed-width table."""
    header = ("scenario", "metric", "ours", "baseline", "ratio", "target", "met")
    lines = []
    for r in rows:
        baseline = "-"
        if r["baseline"] is not None:
            baseline = f"{_number(r['baseline'])} ({r['baseline_label']})"
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        lines.append(
            (
                r["scenario"],
                r["metric"],
                _number(r["value"], r["unit"]),
                baseline,
                _ratio_text(r["ratio"]),
                r["target"],
                met,
            )
        )
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * width for width in widths))
    out += [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines
    ]
    return "\n".join(out)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite (a few seconds)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(scenarios.SCENARIOS),
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument("--profile", action="store_true", help="also sample where the client's CPU goes")
    parser.add_argument("--json", type=Path, default=DEFAULT_OUT, help=f"result file (default {DEFAULT_OUT})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios; print the table; write the JSON; exit 1 if an invariant broke."""
    args = _args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes = SIZES[mode]
    names = args.scenario or list(scenarios.SCENARIOS)
    # Logs go beside the result file, so that a run elsewhere (the smoke test) leaves results/ alone.
    harness.LOG_DIR = args.json.resolve().parent
    harness.LOG_DIR.mkdir(parents=True, exist_ok=True)
    for log in ("client.log", "sandbox.log"):
        harness.log_file(log).write_bytes(b"")
    started = time.monotonic()
    meta: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, "benchmarks/run.py", *(argv or sys.argv[1:])]),
        "mode": mode,
        "commit": git_commit(),
        "machine": machine(),
        "load_before": load_average(),
    }
    print(f"loyalty benchmarks ({mode}): {', '.join(names)}; load average {meta['load_before']}", flush=True)
    # The scenarios whose client is this process start warm (smoke runs measure nothing worth it).
    if mode != "smoke" and (args.profile or set(names) & {"rate", "latency", "cpu", "claims"}):
        meta["warm_up"] = measure.warm_up()
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    broken: list[str] = []
    for name in names:
        print(f"  {name} ...", end="", flush=True)
        try:
            result = scenarios.run_scenario(name, sizes)
        except Exception as exc:  # one broken scenario must not hide the others' figures
            traceback.print_exc(file=sys.stderr)
            message = f"{name}: scenario failed: {type(exc).__name__}: {exc}"
            result = {"error": message, "rows": [], "broken": [message], "seconds": 0.0, "load_after": []}
        results[name] = result
        rows += result["rows"]
        broken += result["broken"]
        print(f" {result['seconds']:.1f} s (load {result['load_after'][0] if result['load_after'] else '?'})")
    profile = cpu_profile(sizes) if args.profile else None
    meta["load_after"] = load_average()
    meta["seconds"] = round(time.monotonic() - started, 1)
    print()
    print(table(rows))
    if profile:
        from benchmarks.sampler import format_report

        for title, report in profile.items():
            print()
            print(f"client CPU per request, one thread, {title}: {report['cpu_ms_per_request']:.3f} ms")
            print(format_report(f"client CPU profile, {title}", report["profile"]))
    print()
    print(f"{meta['seconds']} s in all; load average before {meta['load_before']}, after {meta['load_after']}")
    if broken:
        print("INVARIANTS BROKEN:")
        for message in broken:
            print(f"  - {message}")
    document = {
        "meta": meta,
        "table": rows,
        "invariants_broken": broken,
        "scenarios": results,
        "profile": profile,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")
    shown = args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json
    print(f"results written to {shown}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
