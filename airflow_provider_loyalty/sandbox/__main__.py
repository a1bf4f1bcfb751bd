"""Command line entry point.

``python -m airflow_provider_loyalty.sandbox --port 8099`` serves the sandbox;
``python -m airflow_provider_loyalty.sandbox env --port 8099`` prints the ``AIRFLOW_CONN_*`` exports for it;
``python -m airflow_provider_loyalty.sandbox seed --conn-id ID`` writes its reversal tables into any SQL
database an Airflow connection reaches (PostgreSQL, DuckDB, SQLite...).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from airflow_provider_loyalty.sandbox.config import XOXODAY_ACCESS_TOKEN, XOXODAY_REFRESH_TOKEN, SandboxConfig
from airflow_provider_loyalty.sandbox.launch import connection_env, warehouse_env
from airflow_provider_loyalty.sandbox.seed import generate_dataset, write_duckdb
from airflow_provider_loyalty.sandbox.server import Sandbox

PROG = "python -m airflow_provider_loyalty.sandbox"


def _dataset_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The options of the generated dataset (the same for serving and for seeding a warehouse)."""
    data = parser.add_argument_group("dataset")
    data.add_argument("--seed", type=int, default=42, help="seed of the generated dataset (default 42)")
    data.add_argument("--points", type=int, default=2000, help="point reversal rows (default 2000)")
    data.add_argument("--earns", type=int, default=3000, help="earn reversal rows (default 3000)")
    data.add_argument(
        "--customers",
        type=int,
        default=None,
        help="distinct ordinary customers of the earns (default: one per five rows)",
    )
    data.add_argument(
        "--big-customer-earns",
        type=int,
        default=1500,
        help="earn rows of one extra customer, more than one revokeEarn request takes (default 1500)",
    )
    data.add_argument(
        "--redeemed-share",
        type=float,
        default=0.05,
        help="share of earn rows already redeemed, answered 729 (default 0.05)",
    )
    data.add_argument(
        "--invalid-share",
        type=float,
        default=0.02,
        help="share of ids the vendors do not know, or 731 for earns (default 0.02)",
    )
    data.add_argument(
        "--pos-share",
        type=float,
        default=0.01,
        help="share of earns of POS/CODE promotions, answered 730 (default 0.01)",
    )
    data.add_argument("--reversal-date", default=None, help="YYYY-MM-DD (default today)")
    return data


def _parser() -> argparse.ArgumentParser:
    defaults = SandboxConfig()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a local emulator of the Xoxoday Plum and Capillary APIs.",
        epilog=(
            f"`{PROG} env --port PORT` prints the AIRFLOW_CONN_* exports that point Airflow at a running "
            f"sandbox (see `env --help`); `{PROG} seed --conn-id ID` writes the dataset's reversal tables "
            "into the SQL database of an Airflow connection (see `seed --help`)."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port (default 8099)")
    parser.add_argument("--ready-file", type=Path, help="write the base URL here once serving")
    data = _dataset_arguments(parser)
    data.add_argument("--warehouse", type=Path, help="write the reversal tables to this DuckDB file first")
    behaviour = parser.add_argument_group("behaviour")
    behaviour.add_argument(
        "--latency-ms",
        type=float,
        default=defaults.latency_ms,
        help="sleep added to every vendor request (milliseconds)",
    )
    behaviour.add_argument(
        "--error-rate",
        type=float,
        default=defaults.error_rate,
        help="share of vendor requests answered 502/503 (0 to 1)",
    )
    behaviour.add_argument(
        "--fail-next", type=int, default=defaults.fail_next, help="answer the next N vendor requests with a 503"
    )
    behaviour.add_argument(
        "--xoxoday-rpm", type=int, default=defaults.xoxoday_rpm, help="Xoxoday requests per minute (default unlimited)"
    )
    behaviour.add_argument(
        "--capillary-rpm",
        type=int,
        default=defaults.capillary_rpm,
        help="Capillary revokeEarn requests per minute (default unlimited)",
    )
    behaviour.add_argument(
        "--rate-window-seconds",
        type=float,
        default=defaults.rate_window_seconds,
        help="sliding window of the rate limits, allowing ceil(rpm * window / 60) requests (seconds)",
    )
    behaviour.add_argument(
        "--xoxoday-penalty-seconds",
        type=float,
        default=defaults.xoxoday_penalty_seconds,
        help="once the Xoxoday limit is hit, every request is refused for this long (seconds)",
    )
    behaviour.add_argument(
        "--xoxoday-limit-status",
        type=int,
        default=defaults.xoxoday_limit_status,
        help="HTTP status of Xoxoday's rate-limit answer (undocumented by the vendor)",
    )
    behaviour.add_argument(
        "--capillary-penalty-seconds",
        type=float,
        default=defaults.capillary_penalty_seconds,
        help="once the Capillary limit is hit, every request gets 429 for this long (seconds)",
    )
    behaviour.add_argument(
        "--no-retry-after",
        action="store_true",
        help="omit Retry-After from Capillary 429 answers",
    )
    behaviour.add_argument(
        "--xoxoday-token-ttl",
        type=float,
        default=defaults.xoxoday_token_ttl,
        help="lifetime of a Xoxoday access token (seconds)",
    )
    behaviour.add_argument(
        "--xoxoday-refresh-grace",
        type=float,
        default=defaults.xoxoday_refresh_grace,
        help="seconds a rotated Xoxoday refresh token stays usable (0: invalid at once)",
    )
    behaviour.add_argument(
        "--capillary-token-ttl",
        type=float,
        default=defaults.capillary_token_ttl,
        help="lifetime of a Capillary OAuth token (seconds)",
    )
    behaviour.add_argument("--fault-seed", type=int, default=defaults.seed, help="seed of the --error-rate draws")
    tokens = parser.add_argument_group("xoxoday tokens (the dashboard pair a user would start from)")
    tokens.add_argument("--xoxoday-access-token", default=None, help="initial access token instead of the constant")
    tokens.add_argument("--xoxoday-refresh-token", default=None, help="initial refresh token instead of the constant")
    return parser


def _env_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} env",
        description=(
            "Print the AIRFLOW_CONN_* exports that point Airflow at a running sandbox, for "
            f'`eval "$({PROG} env)"`. The Xoxoday pair is the one the sandbox accepts now.'
        ),
    )
    where = parser.add_argument_group("where the sandbox listens")
    where.add_argument("--host", default="127.0.0.1", help="host the sandbox listens on (default 127.0.0.1)")
    where.add_argument("--port", type=int, default=8099, help="port the sandbox listens on (default 8099)")
    where.add_argument("--url", help="the sandbox's base URL (instead of --host and --port)")
    where.add_argument(
        "--ready-file", type=Path, help="read the base URL from this file (the serving sandbox's --ready-file)"
    )
    parser.add_argument(
        "--warehouse",
        type=Path,
        help="also export the warehouse connection for this DuckDB file (the serving sandbox's --warehouse)",
    )
    parser.add_argument(
        "--warehouse-conn-id",
        default="loyalty_warehouse",
        help="id of that connection (default loyalty_warehouse, as the example DAGs use)",
    )
    tokens = parser.add_argument_group("xoxoday tokens")
    tokens.add_argument(
        "--new-xoxoday-pair",
        action="store_true",
        help=(
            "give the sandbox a new Xoxoday pair and export it, as pasting a new pair from the dashboard; use it "
            "when your Airflow rotated the pair of an earlier sandbox (its stored pair is refused here)"
        ),
    )
    tokens.add_argument(
        "--offline",
        action="store_true",
        help="do not contact the sandbox: export its initial pair (or the two options below)",
    )
    tokens.add_argument("--xoxoday-access-token", help="with --offline: the sandbox's --xoxoday-access-token")
    tokens.add_argument("--xoxoday-refresh-token", help="with --offline: the sandbox's --xoxoday-refresh-token")
    return parser


def _seed_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} seed",
        description=(
            "Write the reversal tables (loyalty_points_reversals, loyalty_earn_reversals, with an order_id "
            "column) of the dataset a sandbox serves into the SQL database of an Airflow connection: any "
            "common-sql connection (PostgreSQL, DuckDB, SQLite, Snowflake...). Existing tables of those names "
            "are replaced. Serve the sandbox with the same dataset options so that it knows these ids."
        ),
    )
    parser.add_argument(
        "--conn-id", required=True, help="the Airflow connection of the warehouse (e.g. loyalty_warehouse)"
    )
    _dataset_arguments(parser)
    return parser


def seed_main(argv: Sequence[str]) -> int:
    """Write the dataset's reversal tables through an Airflow connection; return the exit status."""
    args = _seed_parser().parse_args(argv)
    try:
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
        from airflow_provider_loyalty.sandbox.warehouse import write_sql

        counts = write_sql(args.conn_id, dataset)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = ", ".join(f"{table}={n}" for table, n in counts.items())
    print(f"connection {args.conn_id} seeded ({rows})", flush=True)
    return 0


def _sandbox_json(url: str, path: str, body: dict[str, str] | None = None) -> dict[str, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path, data=data, method="GET" if body is None else "POST", headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a local sandbox: no proxy
    with opener.open(request, timeout=10) as response:
        answer = json.loads(response.read())
    if not isinstance(answer, dict):
        raise ValueError(f"{path} answered {answer!r}, not a JSON object")
    return answer


def env_main(argv: Sequence[str]) -> int:
    """Print ``export AIRFLOW_CONN_...=...`` lines for a running sandbox; return the exit status."""
    args = _env_parser().parse_args(argv)
    if args.ready_file is not None:
        try:
            url = args.ready_file.read_text().strip()
        except OSError as exc:
            print(f"error: cannot read --ready-file {args.ready_file}: {exc.strerror}", file=sys.stderr)
            return 1
    elif args.url:
        url = args.url
    else:
        host = f"[{args.host}]" if ":" in args.host else args.host
        url = f"http://{host}:{args.port}"
    url = url.rstrip("/")
    tokens = {"access_token": XOXODAY_ACCESS_TOKEN, "refresh_token": XOXODAY_REFRESH_TOKEN}
    if args.offline:
        if args.new_xoxoday_pair:
            print("error: --new-xoxoday-pair needs the sandbox; drop --offline", file=sys.stderr)
            return 2
        tokens = {
            "access_token": args.xoxoday_access_token or XOXODAY_ACCESS_TOKEN,
            "refresh_token": args.xoxoday_refresh_token or XOXODAY_REFRESH_TOKEN,
        }
    else:
        if args.xoxoday_access_token or args.xoxoday_refresh_token:
            print("error: --xoxoday-access-token/--xoxoday-refresh-token go with --offline", file=sys.stderr)
            return 2
        try:
            if args.new_xoxoday_pair:
                suffix = secrets.token_hex(8)
                new = {"access_token": f"access-{suffix}", "refresh_token": f"refresh-{suffix}"}
                _sandbox_json(url, "/_sandbox/tokens/xoxoday", new)
                tokens = new
            else:
                current = _sandbox_json(url, "/_sandbox/tokens/xoxoday")
                # An expired access token is left out: the hook refreshes first.
                tokens = {
                    "access_token": str(current.get("access_token") or ""),
                    "refresh_token": str(current["refresh_token"]),
                }
        except (OSError, ValueError, KeyError) as exc:
            reason = getattr(exc, "reason", None) or exc
            print(
                f"error: no sandbox answers at {url} ({reason}); start it with `{PROG} --port PORT`, or pass --offline",
                file=sys.stderr,
            )
            return 1
    exports = connection_env(url, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])
    if args.warehouse is not None:
        exports.update(warehouse_env(args.warehouse, args.warehouse_conn_id))
    for name, value in exports.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


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
    """Run the sandbox until SIGTERM or SIGINT (or, with ``env`` first, print exports); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["env"]:
        return env_main(argv[1:])
    if argv[:1] == ["seed"]:
        return seed_main(argv[1:])
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
