"""What a run left behind, read after it ended: task tries, the sandbox's counters, ledger rows.

Everything here reads (PostgreSQL, the sandbox's admin API, task logs) and returns plain fact
objects; ``checks`` judges them without any I/O. :class:`Kill` is the fact the chaos module
records when it kills a worker.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from cluster.config import DAG_ID, LEDGER_TABLE, VENDOR_TASKS

if TYPE_CHECKING:
    from cluster.dataset import RunData
    from cluster.services import Cluster


@dataclass
class TaskTry:
    """One try of a task instance (current or from the history table)."""

    task_id: str
    map_index: int
    try_number: int
    state: str | None
    hostname: str | None
    start: datetime | None
    end: datetime | None


def task_tries(cluster: Cluster, run_id: str) -> list[TaskTry]:
    """Every try of every task instance of a run (``task_instance`` + ``task_instance_history``)."""
    columns = "task_id, map_index, try_number, state, hostname, start_date, end_date"
    rows = cluster.query(
        "airflow",
        f"SELECT {columns} FROM task_instance WHERE dag_id = %s AND run_id = %s "
        f"UNION ALL SELECT {columns} FROM task_instance_history WHERE dag_id = %s AND run_id = %s",
        [DAG_ID, run_id, DAG_ID, run_id],
    )
    return [TaskTry(*row) for row in rows]


def run_state(cluster: Cluster, run_id: str) -> str | None:
    """State of a DAG run."""
    rows = cluster.query("airflow", "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", [DAG_ID, run_id])
    return rows[0][0] if rows else None


@dataclass
class Kill:
    """What the test killed, and when."""

    victim: str
    survivor: str
    at: datetime
    pids: list[int]
    tries: list[TaskTry]
    progress: dict[tuple[str, int], int]


class LedgerRow(NamedTuple):
    """One outcome row of the ledger (intents, ``status = 'sending'``, are not collected)."""

    vendor: str
    item_key: str
    status: str
    failure_kind: str | None
    code: str | None
    message: str | None
    task_id: str
    map_index: int
    try_number: int


@dataclass
class RunFacts:
    """What one run left behind, collected after it ended."""

    run_id: str
    state: str
    seconds: float
    tries: list[TaskTry]
    #: the sandbox's ``/_sandbox/stats`` (per vendor, and the rate window).
    stats: dict[str, Any]
    ledger: list[LedgerRow]
    #: the sandbox's per-item counts: ``attempts`` and ``cancelled`` per point transaction id...
    points_attempts: dict[str, dict[str, Any]]
    #: ... and ``attempts`` and ``revoked`` per earn id.
    earns_attempts: dict[str, dict[str, Any]]
    #: the sandbox's request log of the run (also saved to ``logs/sandbox-requests-<run>.json``).
    requests: list[dict[str, Any]]
    #: when the facts were read: a try with no end date was still open then.
    collected_at: datetime


def sandbox_attempts(cluster: Cluster, vendor: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The sandbox's per-item attempt and success counts, in chunks (URL length)."""
    out: dict[str, dict[str, Any]] = {}
    path, arg = (
        ("/_sandbox/xoxoday/attempts", "ids") if vendor == "xoxoday" else ("/_sandbox/capillary/attempts", "earn_ids")
    )
    for start in range(0, len(keys), 400):
        chunk = keys[start : start + 400]
        out.update(cluster.sandbox(f"{path}?{arg}={','.join(chunk)}"))
    return out


def attempts_of(cluster: Cluster, run: RunData) -> dict[str, dict[str, dict[str, Any]]]:
    """The sandbox's per-item counts of a run's rows, per vendor."""
    return {
        "xoxoday": sandbox_attempts(cluster, "xoxoday", [str(uid) for uid, _ in run.points]),
        "capillary": sandbox_attempts(cluster, "capillary", [e for _, _, e, _ in run.earns]),
    }


def collect(cluster: Cluster, run_id: str, run: RunData, state: str, seconds: float) -> RunFacts:
    """Read the task tries, the sandbox's counters and the run's ledger rows."""
    rows = cluster.query(
        "loyalty",
        f"SELECT vendor, item_key, status, failure_kind, code, message, task_id, map_index, try_number "
        f"FROM {LEDGER_TABLE} WHERE run_id = %s AND status <> 'sending'",  # outcomes only, not intents
        [run_id],
    )
    requests = cluster.sandbox("/_sandbox/requests")["requests"]
    (cluster.stack.logs / f"sandbox-requests-{run_id}.json").write_text(json.dumps(requests))
    tries = task_tries(cluster, run_id)
    stats = cluster.sandbox("/_sandbox/stats")
    attempts = attempts_of(cluster, run)
    return RunFacts(
        run_id=run_id,
        state=state,
        seconds=seconds,
        tries=tries,
        stats=stats,
        ledger=[LedgerRow(*row) for row in rows],
        points_attempts=attempts["xoxoday"],
        earns_attempts=attempts["capillary"],
        requests=requests,
        collected_at=datetime.now(timezone.utc),
    )


@dataclass(frozen=True)
class TokenFacts:
    """Run 1's rotating Xoxoday token pair: how it was refreshed and where it ended up."""

    #: times the sandbox expired the access tokens (once per ``cancel_points`` try).
    expired: int
    #: HTTP status of each token refresh the vendor received.
    refresh_statuses: list[int]
    #: the refresh token stored in the Airflow Variable (``None``: nothing stored).
    stored_refresh_token: str | None
    #: the refresh token the vendor will accept next.
    current_refresh_token: str
    #: refreshes per worker, from the tasks' own log lines (informative only).
    refreshes_by_host: dict[str, int]


def collect_tokens(cluster: Cluster, facts: RunFacts, expired: int) -> TokenFacts:
    """Read the refreshes the vendor saw, the pair stored in the Variable and the vendor's current one."""
    from cryptography.fernet import Fernet

    refreshes = [
        r for r in cluster.sandbox("/_sandbox/requests?vendor=xoxoday")["requests"] if r["endpoint"] == "token_refresh"
    ]
    stored_rows = cluster.query(
        "airflow", "SELECT val, is_encrypted FROM variable WHERE key = %s", ["loyalty_xoxoday_token__xoxoday_default"]
    )
    stored: dict[str, Any] = {}
    if stored_rows:
        value, encrypted = stored_rows[0]
        text = (
            Fernet(cluster.env["AIRFLOW__CORE__FERNET_KEY"].encode()).decrypt(value.encode()).decode()
            if encrypted
            else value
        )
        stored = json.loads(text)
    current = cluster.sandbox("/_sandbox/tokens/xoxoday")
    by_host: Counter[str] = Counter()
    logs = cluster.work / "airflow" / "logs" / f"dag_id={DAG_ID}" / f"run_id={facts.run_id}"
    for t in facts.tries:
        if t.task_id != VENDOR_TASKS["xoxoday"]:
            continue
        for path in logs.glob(f"task_id={t.task_id}/map_index={t.map_index}/attempt={t.try_number}.log"):
            by_host[t.hostname or "?"] += path.read_text(errors="replace").count("Refreshed the Xoxoday access token")
    return TokenFacts(
        expired=expired,
        refresh_statuses=[int(r["status"]) for r in refreshes],
        stored_refresh_token=stored.get("refresh_token"),
        current_refresh_token=current["refresh_token"],
        refreshes_by_host=dict(by_host),
    )
