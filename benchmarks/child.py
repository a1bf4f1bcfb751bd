"""Measurements that need a process of their own: peak RSS at scale, and DAG parse cost.

``python -m benchmarks.child scale ...`` builds the warehouse rows, runs ``RevokeEarnOperator`` on
them and writes wall/CPU time, RSS after building the rows and the peak RSS during the run.
``python -m benchmarks.child parse ...`` imports ``airflow.sdk`` in a fresh interpreter, then forks
once per probe (as Airflow's DAG processor does) and times each import or DAG file cold.
Results go to the ``--out`` JSON file; stdout carries the operator's task log.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import (
    ROOT,
    Data,
    FakeTI,
    connections,
    earn_rows,
    proc_status_mib,
    reset_peak_rss,
    timed,
    wait_for_url,
)

EXAMPLE_DAGS = ROOT / "airflow_provider_loyalty" / "example_dags"


def scale(args: argparse.Namespace) -> dict[str, Any]:
    """Run the operator over ``--earns`` rows; report time and memory of this process."""
    import airflow.sdk  # noqa: F401 - a task process has Airflow loaded before the rows arrive

    data = Data(earns=args.earns, customers=args.customers, big_customer_earns=0, seed=args.seed)
    dataset = data.generate()
    rows = earn_rows(dataset)
    del dataset
    gc.collect()
    if args.sandbox_ready_file is not None:  # the sandbox started alongside this process
        os.environ.update(connections(wait_for_url(args.sandbox_ready_file)))
    before = proc_status_mib("VmRSS", "VmHWM")
    peak_reset = reset_peak_rss()

    from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator

    operator = RevokeEarnOperator(
        task_id="revoke_earns", earns=rows, max_requests_per_minute=None, dry_run=args.dry_run
    )
    context: Any = {"ti": FakeTI()}
    with timed() as spent:
        summary = operator.execute(context)
    after = proc_status_mib("VmRSS", "VmHWM")
    summary.pop("failures", None)
    return {
        "rows": len(rows),
        "wall_s": spent.wall,
        "cpu_s": spent.cpu,
        "rss_rows_built_mib": before["VmRSS"],
        "peak_rss_mib": after["VmHWM"] if peak_reset else None,
        "peak_rss_includes_row_building": not peak_reset,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "summary": summary,
    }


def _import_operators() -> None:
    import airflow_provider_loyalty.operators.capillary
    import airflow_provider_loyalty.operators.xoxoday  # noqa: F401


def _import_common_sql() -> None:
    import airflow.providers.common.sql.operators.sql  # noqa: F401


def _exec_dag_file(path: Path) -> Callable[[], None]:
    def run() -> None:
        spec = importlib.util.spec_from_file_location(f"unusual_prefix_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)

    return run


def _dagbag(path: Path) -> Callable[[], None]:
    def run() -> None:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(path))
        if bag.import_errors or not bag.dags:
            raise RuntimeError(f"{path.name}: {bag.import_errors or 'no DAG'}")

    return run


def _forked(probe: Callable[[], None], prepare: Callable[[], None] | None = None) -> float:
    """Run ``probe`` in a forked child (after an untimed ``prepare``); return its seconds."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        try:
            if prepare is not None:
                prepare()
            start = time.perf_counter()
            probe()
            os.write(write, repr(time.perf_counter() - start).encode())
        except BaseException as exc:
            os.write(write, f"error: {type(exc).__name__}: {exc}".encode()[:2000])
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 4096):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    text = b"".join(chunks).decode()
    if not text or text.startswith("error"):
        raise RuntimeError(text or "probe died")
    return float(text)


def parse(args: argparse.Namespace) -> dict[str, Any]:
    """Import ``airflow.sdk`` cold, then time each probe in a fork of this interpreter."""
    start = time.perf_counter()
    import airflow.sdk  # noqa: F401

    out: dict[str, Any] = {"airflow.sdk": time.perf_counter() - start}
    # What the DAG processor has loaded before it forks to parse a file.
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401

    out["operators"] = _forked(_import_operators)
    out["common.sql operator"] = _forked(_import_common_sql)
    for path in sorted(EXAMPLE_DAGS.glob("*.py")):
        out[f"{path.name}: exec"] = _forked(_exec_dag_file(path))
        out[f"{path.name}: exec after common.sql"] = _forked(_exec_dag_file(path), prepare=_import_common_sql)
        out[f"{path.name}: DagBag"] = _forked(_dagbag(path))
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``scale`` or ``parse``, result written to ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.child")
    sub = parser.add_subparsers(dest="what", required=True)
    scale_parser = sub.add_parser("scale")
    scale_parser.add_argument("--earns", type=int, required=True)
    scale_parser.add_argument("--customers", type=int, default=None)
    scale_parser.add_argument("--seed", type=int, default=42)
    scale_parser.add_argument("--dry-run", action="store_true")
    scale_parser.add_argument("--sandbox-ready-file", type=Path, help="wait for a sandbox URL here")
    scale_parser.add_argument("--out", type=Path, required=True)
    parse_parser = sub.add_parser("parse")
    parse_parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = scale(args) if args.what == "scale" else parse(args)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
