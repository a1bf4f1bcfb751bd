"""Command line entry point: ``python -m airflow_provider_loyalty.sandbox --port 8099``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from airflow_provider_loyalty.sandbox.config import SandboxConfig
from airflow_provider_loyalty.sandbox.seed import generate_dataset, write_duckdb
from airflow_provider_loyalty.sandbox.server import Sandbox


def _parser() -> argparse.ArgumentParser:
    defaults = SandboxConfig()
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_loyalty.sandbox",
        description="Serve a local emulator of the Xoxoday Plum and Capillary APIs.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port (default 8099)")
    parser.add_argument("--ready-file", type=Path, help="write the base URL here once serving")
    data = parser.add_argument_group("dataset")
    data.add_argument("--seed", type=int, default=42)
    data.add_argument("--points", type=int, default=2000, help="point reversal rows")
    data.add_argument("--earns", type=int, default=3000, help="earn reversal rows")
    data.add_argument("--customers", type=int, default=None)
    data.add_argument("--big-customer-earns", type=int, default=1500)
    data.add_argument("--redeemed-share", type=float, default=0.05)
    data.add_argument("--invalid-share", type=float, default=0.02)
    data.add_argument("--pos-share", type=float, default=0.01)
    data.add_argument("--warehouse", type=Path, help="write the reversal tables to this DuckDB file first")
    data.add_argument("--reversal-date", default=None, help="YYYY-MM-DD (default today)")
    behaviour = parser.add_argument_group("behaviour")
    behaviour.add_argument("--latency-ms", type=float, default=defaults.latency_ms)
    behaviour.add_argument("--error-rate", type=float, default=defaults.error_rate)
    behaviour.add_argument("--fail-next", type=int, default=defaults.fail_next)
    behaviour.add_argument("--xoxoday-rpm", type=int, default=defaults.xoxoday_rpm)
    behaviour.add_argument("--capillary-rpm", type=int, default=defaults.capillary_rpm)
    behaviour.add_argument("--rate-window-seconds", type=float, default=defaults.rate_window_seconds)
    behaviour.add_argument("--xoxoday-penalty-seconds", type=float, default=defaults.xoxoday_penalty_seconds)
    behaviour.add_argument("--xoxoday-limit-status", type=int, default=defaults.xoxoday_limit_status)
    behaviour.add_argument(
        "--capillary-penalty-seconds",
        type=float,
        default=defaults.capillary_penalty_seconds,
    )
    behaviour.add_argument(
        "--no-retry-after",
        action="store_true",
        help="omit Retry-After from Capillary 429 answers",
    )
    behaviour.add_argument("--xoxoday-token-ttl", type=float, default=defaults.xoxoday_token_ttl)
    behaviour.add_argument("--xoxoday-refresh-grace", type=float, default=defaults.xoxoday_refresh_grace)
    behaviour.add_argument("--capillary-token-ttl", type=float, default=defaults.capillary_token_ttl)
    behaviour.add_argument("--fault-seed", type=int, default=defaults.seed, help="seed of error_rate draws")
    tokens = parser.add_argument_group("xoxoday tokens (the dashboard pair a user would start from)")
    tokens.add_argument("--xoxoday-access-token", default=None, help="initial access token instead of the constant")
    tokens.add_argument("--xoxoday-refresh-token", default=None, help="initial refresh token instead of the constant")
    return parser


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox until SIGTERM or SIGINT; return the exit status."""
    args = _parser().parse_args(argv)
    config = SandboxConfig()
    try:
        config.update(
            {
                "latency_ms": args.latency_ms,
                "error_rate": args.error_rate,
                "fail_next": args.fail_next,
                "xoxoday_rpm": args.xoxoday_rpm,
                "capillary_rpm": args.capillary_rpm,
                "rate_window_seconds": args.rate_window_seconds,
                "xoxoday_penalty_seconds": args.xoxoday_penalty_seconds,
                "xoxoday_limit_status": args.xoxoday_limit_status,
                "capillary_penalty_seconds": args.capillary_penalty_seconds,
                "capillary_retry_after": not args.no_retry_after,
                "xoxoday_token_ttl": args.xoxoday_token_ttl,
                "xoxoday_refresh_grace": args.xoxoday_refresh_grace,
                "capillary_token_ttl": args.capillary_token_ttl,
                "seed": args.fault_seed,
            }
        )
        dataset = generate_dataset(
            seed=args.seed,
            points=args.points,
            earns=args.earns,
            customers=args.customers,
            redeemed_share=args.redeemed_share,
            invalid_share=args.invalid_share,
            pos_share=args.pos_share,
            big_customer_earns=args.big_customer_earns,
            reversal_date=args.reversal_date,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.warehouse is not None:
        counts = write_duckdb(args.warehouse, dataset, args.reversal_date)
        rows = ", ".join(f"{table}={n}" for table, n in counts.items())
        print(f"warehouse {args.warehouse} written ({rows})", flush=True)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    sandbox = Sandbox(config, dataset, host=args.host, port=args.port)
    del dataset  # the state holds what the vendors know; free the rest
    if args.xoxoday_access_token or args.xoxoday_refresh_token:
        sandbox.set_xoxoday_tokens(args.xoxoday_access_token, args.xoxoday_refresh_token)
    url = sandbox.start()
    try:
        print(f"sandbox listening on {url}", flush=True)
        if args.ready_file is not None:
            _write_atomically(args.ready_file, url)
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
