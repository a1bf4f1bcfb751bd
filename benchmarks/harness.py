"""Plumbing shared by the scenarios: the sandbox in its own process, connections, datasets, measuring."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: Where the task logs of the clients (``client.log``) and the sandbox's output (``sandbox.log``) go.
LOG_DIR = RESULTS


def log_file(name: str) -> Path:
    """``client.log`` or ``sandbox.log`` in the current :data:`LOG_DIR`."""
    return LOG_DIR / name


#: Every benchmark dataset is fully revocable: any failed item is a bug, not data.
CLEAN = {"redeemed_share": 0.0, "invalid_share": 0.0, "pos_share": 0.0}


@dataclass(frozen=True)
class Data:
    """Sizes of a deterministic dataset; the sandbox and the client build the same one from them."""

    points: int = 0
    earns: int = 0
    customers: int | None = None
    big_customer_earns: int = 0
    seed: int = 42

    def cli(self) -> list[str]:
        """Sandbox CLI arguments that load this dataset."""
        args = ["--seed", str(self.seed), "--points", str(self.points), "--earns", str(self.earns)]
        args += ["--big-customer-earns", str(self.big_customer_earns)]
        args += ["--redeemed-share", "0", "--invalid-share", "0", "--pos-share", "0"]
        if self.customers is not None:
            args += ["--customers", str(self.customers)]
        return args

    def generate(self) -> Any:
        """The same :class:`~airflow_provider_loyalty.sandbox.Dataset` the sandbox loaded."""
        from airflow_provider_loyalty.sandbox import generate_dataset

        return generate_dataset(
            seed=self.seed,
            points=self.points,
            earns=self.earns,
            customers=self.customers,
            big_customer_earns=self.big_customer_earns,
            redeemed_share=CLEAN["redeemed_share"],
            invalid_share=CLEAN["invalid_share"],
            pos_share=CLEAN["pos_share"],
        )


def earn_rows(dataset: Any) -> list[tuple[int, str, str]]:
    """The warehouse rows ``(customer_id, promotion_id, earn_id)`` the extraction would push."""
    return [(customer, promotion, earn) for customer, promotion, earn, _ in dataset.earn_reversals]


def point_ids(dataset: Any) -> list[int]:
    """The warehouse's unique_ids."""
    return [unique_id for unique_id, _ in dataset.point_reversals]


def split_customers(rows: Sequence[tuple[int, str, str]], *sizes: int) -> list[list[tuple[int, str, str]]]:
    """Cut earn rows into groups of whole customers (first ``sizes[0]`` customers, the next ``sizes[1]``...).

    The last group gets the remaining customers. Disjoint groups let several clients run against
    one sandbox without touching each other's earns.
    """
    order: dict[int, int] = {}
    for customer, _, _ in rows:
        order.setdefault(customer, len(order))
    bounds = []
    start = 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    bounds.append((start, len(order)))
    groups: list[list[tuple[int, str, str]]] = [[] for _ in bounds]
    for row in rows:
        rank = order[row[0]]
        for index, (low, high) in enumerate(bounds):
            if low <= rank < high:
                groups[index].append(row)
                break
    return groups


@dataclass
class SandboxProcess:
    """``python -m airflow_provider_loyalty.sandbox`` in a child process, for one scenario configuration.

    :param data: the dataset to load.
    :param options: further CLI options (``--latency-ms``, ``--capillary-rpm`` ...).
    :param wait: wait for the sandbox to serve on entering; when ``False``, a client process can
        start meanwhile and wait for :attr:`ready_file` itself (:func:`wait_for_url`).
    """

    data: Data
    options: list[str] = field(default_factory=list)
    wait: bool = True
    url: str = ""
    process: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def ready_file(self) -> Path:
        """Where the sandbox writes its base URL once it serves."""
        assert self._tmp is not None, "not started"
        return Path(self._tmp.name) / "url"

    def __enter__(self) -> SandboxProcess:
        self._tmp = tempfile.TemporaryDirectory(prefix="loyalty-bench-")
        with open(log_file("sandbox.log"), "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "airflow_provider_loyalty.sandbox", "--port", "0"]
                + ["--ready-file", str(self.ready_file)]
                + self.data.cli()
                + self.options,
                stdout=log,
                stderr=log,
                cwd=ROOT,
            )
        if self.wait:
            try:
                self.url = wait_for_url(self.ready_file, self.process)
            except RuntimeError:
                self.__exit__(None, None, None)
                raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the sandbox process has used so far, from ``/proc``."""
        if self.process is None:
            return None
        try:
            with open(f"/proc/{self.process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self, vendor: str) -> dict[str, Any]:
        """The sandbox's counters for ``vendor`` since the last reset."""
        answer = requests.get(f"{self.url}/_sandbox/stats", timeout=30)
        answer.raise_for_status()
        return dict(answer.json()[vendor])

    def request_log(self, vendor: str) -> list[dict[str, Any]]:
        """The vendor requests the sandbox logged since the last reset (arrival time, status...)."""
        answer = requests.get(f"{self.url}/_sandbox/requests", params={"vendor": vendor}, timeout=60)
        answer.raise_for_status()
        return list(answer.json()["requests"])

    def reset_stats(self) -> None:
        """Forget requests counted so far (item states are kept)."""
        requests.post(f"{self.url}/_sandbox/reset-stats", timeout=30).raise_for_status()

    def connections(self) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` variables pointing both default connections at this sandbox."""
        return connections(self.url)

    @contextlib.contextmanager
    def connected(self) -> Iterator[None]:
        """Set the connection variables in this process for the duration."""
        saved = {name: os.environ.get(name) for name in self.connections()}
        os.environ.update(self.connections())
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def wait_for_url(ready_file: Path, process: subprocess.Popen[bytes] | None = None, timeout: float = 180.0) -> str:
    """Wait until a sandbox wrote its base URL to ``ready_file``; return it."""
    from airflow_provider_loyalty.sandbox import wait_for_url as wait

    try:
        return wait(ready_file, process, timeout)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; see {log_file('sandbox.log')}") from None


def connections(url: str) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables pointing both default connections at the sandbox at ``url``."""
    from airflow_provider_loyalty.sandbox import connection_env

    return connection_env(url)


class FakeTI:
    """The bits of a task instance the operators read outside a DAG run."""

    dag_id = "benchmark"
    run_id = "benchmark"
    task_id = "benchmark"
    map_index = -1
    try_number = 1

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        """Keep what the operator pushes."""
        self.pushed[key] = value


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Send this process's stdout/stderr (the operators' task logs) to ``client.log``.

    The operators log one line per request, as in a real task: that cost stays in the measurement,
    only the destination changes (a file, like a task log).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file("client.log"), "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


@dataclass
class Timed:
    """Wall and CPU seconds of this process over a block."""

    wall: float = 0.0
    cpu: float = 0.0


@contextlib.contextmanager
def timed() -> Iterator[Timed]:
    """Measure wall time and this process's CPU time (all threads) of a block."""
    result = Timed()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield result
    finally:
        result.wall = time.perf_counter() - wall
        result.cpu = time.process_time() - cpu


def proc_status_mib(*keys: str) -> dict[str, float]:
    """Read memory lines (``VmRSS``, ``VmHWM``...) of ``/proc/self/status`` in MiB."""
    out: dict[str, float] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in keys:
                out[name] = int(value.split()[0]) / 1024
    return out


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0); tell whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        return []


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as info:
        memory_gib = round(int(info.readline().split()[1]) / 1024 / 1024, 1)
    import airflow

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "airflow": airflow.__version__,
        "requests": requests.__version__,
    }


def git_commit() -> str | None:
    """The checked-out commit (``+dirty`` when the tree has changes), if git is available."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")
