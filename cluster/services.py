"""The deployment: PostgreSQL, Redis, the vendor sandbox and the Airflow components, on loopback.

:class:`Cluster` holds the addresses, secrets and processes of one deployment and the clients the
other modules use (SQL, the sandbox's admin API, the ``airflow`` CLI). The ``start_*`` functions
bring each service up and wait until it answers; :func:`airflow_env` is the configuration every
Airflow process shares.
"""

# Subprocesses run fixed command lines of our own tools; URLs are the deployment's own loopback ones.
# ruff: noqa: S310, S603, S607

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.config import (
    CLUSTER,
    DAG_ID,
    POOLS,
    ROOT,
    SCENARIO_POOLS,
    WORKERS,
    Failed,
    Settings,
    dataset_args,
    say,
)
from cluster.stack import Service, Stack, free_port, wait_until


@dataclass
class Cluster:
    """Addresses, secrets and processes of one deployment."""

    work: Path
    stack: Stack
    pg_port: int = 0
    pg_password: str = ""
    redis_port: int = 0
    api_port: int = 0
    sandbox_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    workers: dict[str, Service] = field(default_factory=dict)
    triggerer: Service | None = None
    #: base URLs of the scenarios' own sandboxes (cluster/scenarios.py), by scenario
    scenario_urls: dict[str, str] = field(default_factory=dict)

    def dsn(self, database: str) -> str:
        """The libpq URL of a database of our PostgreSQL."""
        return f"postgresql://loyalty:{self.pg_password}@127.0.0.1:{self.pg_port}/{database}"

    @contextmanager
    def db(self, database: str) -> Iterator[Any]:
        """A psycopg2 connection (autocommit) to a database of our PostgreSQL."""
        import psycopg2

        conn = psycopg2.connect(self.dsn(database), connect_timeout=5)
        conn.autocommit = True
        try:
            yield conn
        finally:
            conn.close()

    def query(self, database: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one query and return its rows."""
        with self.db(database) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    def sandbox(self, path: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
        """Call an admin endpoint of the sandbox."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.sandbox_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Run an ``airflow`` CLI command; return its output, raise :class:`Failed` on a non-zero exit."""
        command = [str(Path(sys.executable).with_name("airflow")), *args]
        done = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        log = self.stack.logs / "cli.log"
        with log.open("a") as out:
            out.write(f"$ airflow {' '.join(args)}\n{done.stdout}{done.stderr}\n")
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise Failed(f"`airflow {' '.join(args[:3])}` exited {done.returncode}:\n{tail}")
        return done.stdout


def _pg_bindir() -> Path:
    override = os.environ.get("LOYALTY_PG_BINDIR")
    candidates = [Path(override)] if override else []
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.replace(".", "").isdigit()]
    candidates += sorted(versions, key=lambda p: [int(part) for part in p.parent.name.split(".")], reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(Path(which).parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    raise Failed("PostgreSQL server binaries (initdb, postgres) not found: apt-get install postgresql")


def preflight() -> Path:
    """Check the tools the deployment needs; return PostgreSQL's bin dir."""
    missing = []
    for module in ("celery", "redis", "psycopg2", "airflow.providers.celery", "airflow.providers.postgres"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise Failed(f"missing Python packages {missing}: make install (the [cluster,postgres] extras)")
    if not shutil.which("redis-server"):
        raise Failed("redis-server not found: apt-get install redis-server")
    return _pg_bindir()


def start_postgres(cluster: Cluster, bindir: Path) -> None:
    """Create a throwaway cluster (``initdb``) in the work dir and start it on its own loopback port."""
    pgdir = cluster.work / "pg"
    pgdir.mkdir()
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: use its own OS user
        import pwd

        user = "postgres"
        record = pwd.getpwnam(user)
        os.chown(pgdir, record.pw_uid, record.pw_gid)
    cluster.pg_password = secrets.token_hex(16)
    pwfile = pgdir / "pwfile"
    pwfile.write_text(cluster.pg_password + "\n")
    if user:
        shutil.chown(pwfile, user, user)
    init = subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(pgdir / "data"),
            "-U",
            "loyalty",
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-instructions",
        ],
        capture_output=True,
        text=True,
        user=user,
        group=user,
        extra_groups=[] if user else None,
        cwd=pgdir,
        timeout=120,
    )
    (cluster.stack.logs / "initdb.log").write_text(init.stdout + init.stderr)
    if init.returncode != 0:
        raise Failed(f"initdb failed:\n{init.stdout}{init.stderr}")
    pwfile.unlink()
    cluster.pg_port = free_port()
    service = cluster.stack.start(
        "postgres",
        [
            str(bindir / "postgres"),
            "-D",
            str(pgdir / "data"),
            "-p",
            str(cluster.pg_port),
            "-k",
            str(pgdir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=64MB",
            # A test database: durability traded for speed.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ],
        env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"},
        user=user,
        cwd=pgdir,
        stop_signal=signal.SIGINT,  # fast shutdown
        tier=0,
    )
    wait_until("PostgreSQL", lambda: cluster.query("postgres", "SELECT 1"), timeout=60, services=[service])
    for database in ("airflow", "loyalty"):
        cluster.query("postgres", f"CREATE DATABASE {database}")


def start_redis(cluster: Cluster) -> None:
    """Redis on its own loopback port, nothing persisted."""
    import redis

    rdir = cluster.work / "redis"
    rdir.mkdir()
    cluster.redis_port = free_port()
    service = cluster.stack.start(
        "redis",
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(cluster.redis_port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(rdir),
            "--protected-mode",
            "yes",
        ],
        env={"PATH": os.environ.get("PATH", "")},
        tier=1,
    )
    client = redis.Redis(host="127.0.0.1", port=cluster.redis_port, socket_timeout=2)
    wait_until("Redis", client.ping, timeout=30, services=[service])


def start_sandbox(cluster: Cluster, settings: Settings, access: str, refresh: str) -> None:
    """The vendor sandbox, with the dataset of both runs and the vendors' rate limits."""
    ready = cluster.work / "sandbox.url"
    service = cluster.stack.start(
        "sandbox",
        [
            sys.executable,
            "-m",
            "airflow_provider_loyalty.sandbox",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            *dataset_args(settings),
            "--latency-ms",
            str(settings.latency_ms),
            "--capillary-rpm",
            str(settings.capillary_rpm),
            "--xoxoday-rpm",
            str(settings.xoxoday_rpm),
            "--rate-window-seconds",
            str(settings.rate_window),
            "--capillary-penalty-seconds",
            str(settings.rate_window),
            "--xoxoday-access-token",
            access,
            "--xoxoday-refresh-token",
            refresh,
        ],
        env=dict(os.environ),
        tier=1,
    )
    wait_until("the sandbox", ready.exists, timeout=60, services=[service])
    cluster.sandbox_url = ready.read_text().strip()


def airflow_env(cluster: Cluster, settings: Settings, access: str, refresh: str) -> dict[str, str]:
    """The environment shared by every Airflow process (configuration and connections)."""
    from cryptography.fernet import Fernet

    from airflow_provider_loyalty.sandbox import connection_env

    api = f"http://127.0.0.1:{cluster.api_port}"
    metadata = f"postgresql+psycopg2://loyalty:{cluster.pg_password}@127.0.0.1:{cluster.pg_port}/airflow"
    database = {
        "host": "127.0.0.1",
        "port": cluster.pg_port,
        "login": "loyalty",
        "password": cluster.pg_password,
        "schema": "loyalty",
    }
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(cluster.work / "airflow"),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(CLUSTER / "pythonpath"), os.environ.get("PYTHONPATH", "")) if p
            ),
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder(cluster)),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            # Two workers on one machine: tell them apart in task_instance.hostname.
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "loyalty_cluster_hostname.hostname",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(cluster.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{cluster.redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(settings.worker_concurrency),
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "3600",
            # Runs are triggered by the test only (the DAG is @daily and its start_date is past).
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # Notice a dead worker's task in seconds, not 5 minutes; and a message lost with it.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(settings.heartbeat_timeout),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            # A task message the killed worker had already taken is lost with it (Redis redelivers
            # only after the visibility timeout): the scheduler requeues tasks stuck in queued.
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(settings.queued_timeout),
            # A triggerer SIGKILLed by the deferral scenario: its triggers go to the new one in seconds.
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(settings.triggerer_health_check),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "LOYALTY_CLUSTER_DEFER_CONCURRENCY": str(settings.defer_concurrency),  # cluster/dags
            "AIRFLOW_CONN_LOYALTY_WAREHOUSE": json.dumps({"conn_type": "postgres", **database}),
            "AIRFLOW_CONN_LOYALTY_LEDGER": json.dumps({"conn_type": "postgres", **database}),
            "AIRFLOW_CONN_LOYALTY_RATE_BUDGET": json.dumps(
                {"conn_type": "redis", "host": "127.0.0.1", "port": cluster.redis_port, "extra": json.dumps({"db": 1})}
            ),
            **connection_env(cluster.sandbox_url, access_token=access, refresh_token=refresh),
        }
    )
    return env


def dags_folder(cluster: Cluster) -> Path:
    """The DAGs folder: the examples (the fan-out DAG) and the scenarios' DAGs (``cluster/dags``), as links."""
    folder = cluster.work / "dags"
    folder.mkdir(exist_ok=True)
    for name, target in (("examples", ROOT / "example_dags"), ("scenarios", CLUSTER / "dags")):
        link = folder / name
        if not link.exists():
            link.symlink_to(target.resolve(), target_is_directory=True)
    return folder


def start_triggerer(cluster: Cluster) -> Service:
    """``airflow triggerer`` (deferred tasks' timers); started again by the deferral scenario after a SIGKILL."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    cluster.triggerer = cluster.stack.start(
        "triggerer",
        [airflow, "triggerer", "--skip-serve-logs"],
        {**cluster.env, "LOYALTY_CLUSTER_HOSTNAME": "triggerer"},
    )
    return cluster.triggerer


def start_airflow(cluster: Cluster, settings: Settings) -> None:
    """Migrate, create the pools, start api-server, scheduler, dag-processor, triggerer and the two workers."""
    say("airflow db migrate")
    cluster.airflow("db", "migrate", timeout=400)
    pools = {
        POOLS["xoxoday"]: {"slots": settings.xoxoday_slots, "description": "Xoxoday reversals"},
        POOLS["capillary"]: {"slots": settings.capillary_slots, "description": "Capillary reversals"},
        SCENARIO_POOLS["rate"]: {"slots": settings.rate_slots, "description": "rate scenario"},
        SCENARIO_POOLS["slot"]: {"slots": 1, "description": "deferral scenario: one slot for two DAGs"},
    }
    pools_file = cluster.work / "pools.json"
    pools_file.write_text(json.dumps(pools))
    cluster.airflow("pools", "import", str(pools_file))

    def env_for(host: str) -> dict[str, str]:
        return {**cluster.env, "LOYALTY_CLUSTER_HOSTNAME": host}

    airflow = str(Path(sys.executable).with_name("airflow"))
    stack = cluster.stack
    api = stack.start(
        "api-server",
        [airflow, "api-server", "--host", "127.0.0.1", "--port", str(cluster.api_port), "--workers", "1"],
        env_for("api-server"),
    )
    scheduler = stack.start("scheduler", [airflow, "scheduler", "--skip-serve-logs"], env_for("scheduler"))
    processor = stack.start("dag-processor", [airflow, "dag-processor"], env_for("dag-processor"))
    triggerer = start_triggerer(cluster)
    for name in WORKERS:
        cluster.workers[name] = stack.start(
            name,
            [
                airflow,
                "celery",
                "worker",
                "--concurrency",
                str(settings.worker_concurrency),
                "--skip-serve-logs",
                "--celery-hostname",
                f"{name}@loyalty-cluster",
                "--without-mingle",
                "--without-gossip",
            ],
            env_for(name),
        )
    everything = [api, scheduler, processor, triggerer, *cluster.workers.values()]

    def api_healthy() -> bool:
        url = f"http://127.0.0.1:{cluster.api_port}/api/v2/monitor/health"
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)

    wait_until("the api-server", api_healthy, timeout=180, services=everything, interval=1)
    wait_until(
        "the scheduler's heartbeat",
        lambda: cluster.query(
            "airflow",
            "SELECT 1 FROM job WHERE job_type = 'SchedulerJob' AND state = 'running' "
            "AND latest_heartbeat > now() - interval '30 seconds'",
        ),
        timeout=180,
        services=everything,
        interval=1,
    )
    wait_until(
        f"{DAG_ID} to be parsed",
        lambda: cluster.query(
            "airflow",
            "SELECT 1 FROM dag d JOIN serialized_dag s USING (dag_id) WHERE d.dag_id = %s AND NOT d.is_paused",
            [DAG_ID],
        ),
        timeout=180,
        services=everything,
        interval=1,
    )
    for name, worker in cluster.workers.items():
        wait_until(f"{name} to be ready", lambda w=worker: " ready." in w.tail(200), timeout=180, services=everything)
