"""Item claims: an attempt owns an item (a lease with an epoch) before it writes the item's intent.

A claim is one row per ``(vendor, item_key)`` in a table beside the ledger, in the ledger's own
database: its owner (run, task, map index, try, host, pid and a token unique to the attempt), since
when, until when (the lease) and an epoch that grows by one with every new owner. Every statement
is one atomic, portable SQL statement per chunk of items (PostgreSQL, SQLite >= 3.35, DuckDB all
have ``RETURNING``):

- **claim**: ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` takes items nobody claimed yet (epoch
  1); a conditional ``UPDATE ... WHERE lease_expiry IS NULL OR lease_expiry < now RETURNING`` takes
  over released claims and expired leases (epoch + 1; an expired lease — its owner never settled
  the item — is reported as such, and the caller treats the item as in doubt);
- **fence**: ``UPDATE ... SET lease_expiry = now + lease WHERE token = mine RETURNING``, run right
  before a request leaves, in the transaction that writes its intent: it renews the lease and
  returns the items still held, in one statement. A stale owner (paused past its lease, then taken
  over) gets fewer rows back and must not send the items it lost;
- **renew** (a heartbeat, every few seconds) and **release** (once an item's outcome is written;
  the row stays, ``lease_expiry`` NULL, so that the epoch keeps growing).

The lease is a time in UTC seconds that the callers pass in (``now``). Hosts sharing a server
database measure it on the server's clock (:func:`server_clock_sql`), so that a worker whose clock
is off neither takes over a live claim nor waits for a dead one longer than its lease. The functions take a
DB-API connection and the driver's placeholder; they never commit: the caller's transaction
decides (the intent and its fence commit together). Generic code: no vendor is named here.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from airflow_provider_loyalty._batches import batched

#: Keys per claim statement: 14 parameters a row stays far below every engine's parameter limit.
CLAIM_CHUNK = 250
#: Keys per fence / release / renew statement (one parameter each).
KEY_CHUNK = 500
#: Lease of a claim (seconds) unless the operator says otherwise; renewed every quarter of it.
DEFAULT_LEASE_SECONDS = 60.0

#: The claim table's columns, in the order :func:`claim` writes them.
COLUMNS = (
    "vendor",
    "item_key",
    "token",
    "owner",
    "dag_id",
    "run_id",
    "task_id",
    "map_index",
    "try_number",
    "host",
    "pid",
    "claimed_at",
    "lease_expiry",
    "epoch",
)


def claims_table(ledger_table: str) -> str:
    """The claim table beside ``ledger_table`` (same schema): ``<ledger_table>_claims``."""
    return f"{ledger_table}_claims"


def create_table_sql(table: str) -> str:
    """The portable ``CREATE TABLE IF NOT EXISTS`` of a claim table (``table`` is a checked identifier)."""
    return f"""CREATE TABLE IF NOT EXISTS {table} (
    vendor VARCHAR(16) NOT NULL,
    item_key VARCHAR(512) NOT NULL,
    token VARCHAR(64) NOT NULL,
    owner VARCHAR(1000),
    dag_id VARCHAR(250),
    run_id VARCHAR(250),
    task_id VARCHAR(250),
    map_index INTEGER,
    try_number INTEGER,
    host VARCHAR(250),
    pid INTEGER,
    claimed_at DOUBLE PRECISION NOT NULL,
    lease_expiry DOUBLE PRECISION,
    epoch BIGINT NOT NULL,
    taken_from VARCHAR(1000),
    PRIMARY KEY (vendor, item_key)
)"""


class ClaimTableMissing(RuntimeError):
    """The claim table is not there and could not be created; the message names the statement to run."""


def ensure_table(conn: Any, table: str) -> None:
    """Create the claim table if it is missing; use it as it is when the role may not create tables.

    PostgreSQL refuses even ``CREATE TABLE IF NOT EXISTS`` of an existing table to a role without
    CREATE rights on the schema (a table a DBA provisioned, DML granted). Not committed.
    """
    statement = create_table_sql(table)
    try:
        _fetch(conn, statement, [])
    except Exception as exc:
        conn.rollback()
        try:
            _fetch(conn, f"SELECT item_key FROM {table} WHERE 1 = 0", [])
        except Exception:
            conn.rollback()
            raise ClaimTableMissing(
                f"the claim table {table} is missing and could not be created ({type(exc).__name__}: "
                f"{str(exc)[:200]}); run: {statement}"
            ) from exc


@dataclass(frozen=True)
class Owner:
    """Who holds a claim: one try of one task instance, in one process.

    :param run: ``dag_id``, ``run_id``, ``task_id``, ``map_index``, ``try_number`` of the task instance.
    :param host: the host name (default: this one).
    :param pid: the process id (default: this one).
    :param token: unique to this attempt (default: random); it is what the fence compares.
    """

    run: dict[str, Any]
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    def values(self, now: float, lease: float) -> tuple[Any, ...]:
        """The claim columns from ``token`` to ``lease_expiry`` for a claim taken at ``now``."""
        run = self.run
        return (
            self.token,
            self.label,
            run.get("dag_id"),
            run.get("run_id"),
            run.get("task_id"),
            run.get("map_index"),
            run.get("try_number"),
            self.host[:250],
            self.pid,
            now,
            now + lease,
        )

    @property
    def label(self) -> str:
        """``run manual__x, task revoke_earns[3] try 2 on worker-a (pid 4711)``: for messages and the page."""
        index = self.run.get("map_index")
        mapped = f"[{index}]" if index not in (None, -1) else ""
        return (
            f"run {self.run.get('run_id')}, task {self.run.get('task_id')}{mapped} try {self.run.get('try_number')} "
            f"on {self.host} (pid {self.pid})"
        )[:1000]


class Holder(NamedTuple):
    """Who holds a claim someone else asked for."""

    label: str
    lease_expiry: float
    host: str | None
    pid: int | None
    dag_id: str | None
    run_id: str | None
    task_id: str | None
    map_index: int | None
    try_number: int | None

    def same_task_earlier_try(self, run: dict[str, Any]) -> bool:
        """Held by an earlier try of the task instance ``run`` (a dead worker's, or a zombie's)."""
        return (
            (self.dag_id, self.run_id, self.task_id, self.map_index)
            == (run.get("dag_id"), run.get("run_id"), run.get("task_id"), run.get("map_index"))
            and self.try_number is not None
            and run.get("try_number") is not None
            and int(self.try_number) < int(run["try_number"])
        )


@dataclass
class ClaimResult:
    """What one :func:`claim` call got.

    :param mine: key -> epoch of the items now claimed by the caller.
    :param expired: keys among ``mine`` taken over from an owner whose lease ran out without
        settling the item (the caller treats them as in doubt), with that owner's label.
    :param reclaimed: keys among ``mine`` taken over from a claim its owner released (settled).
    :param elsewhere: key -> the :class:`Holder` of items under someone else's live claim.
    """

    mine: dict[str, int] = field(default_factory=dict)
    expired: dict[str, str] = field(default_factory=dict)
    reclaimed: set[str] = field(default_factory=set)
    elsewhere: dict[str, Holder] = field(default_factory=dict)


def _fetch(conn: Any, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    cursor = conn.cursor()
    try:
        cursor.execute(sql, list(params))
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    finally:
        cursor.close()


def _marks(placeholder: str, n: int) -> str:
    return ", ".join([placeholder] * n)


def claim(
    conn: Any,
    table: str,
    placeholder: str,
    vendor: str,
    keys: Iterable[str],
    owner: Owner,
    *,
    now: float,
    lease: float,
) -> ClaimResult:
    """Claim ``keys`` for ``owner``: new ones, released ones and expired leases; report the rest.

    Per chunk of :data:`CLAIM_CHUNK` keys: one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``,
    then (for the keys it did not insert) one conditional ``UPDATE ... RETURNING`` that takes over
    released and expired claims, then one ``SELECT`` naming the owners of the rest. Not committed.
    """
    result = ClaimResult()
    p = placeholder
    values = owner.values(now, lease)
    row_marks = "(" + _marks(p, len(COLUMNS)) + ")"
    # In key order: two claimers whose items overlap take the rows' locks in one order (PostgreSQL
    # would otherwise detect a deadlock between their inserts and fail one of them).
    for chunk in batched(sorted(set(keys)), CLAIM_CHUNK):
        inserted = _fetch(
            conn,
            f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES {', '.join([row_marks] * len(chunk))} "
            "ON CONFLICT (vendor, item_key) DO NOTHING RETURNING item_key, epoch",
            [v for key in chunk for v in (vendor, key, *values, 1)],
        )
        result.mine.update({str(k): int(e) for k, e in inserted})
        rest = [key for key in chunk if key not in result.mine]
        if not rest:
            continue
        # The SET clauses read the row as it was: taken_from names the owner whose lease ran out
        # (NULL for a released claim), so the caller knows which items may be in doubt.
        taken = _fetch(
            conn,
            f"UPDATE {table} SET taken_from = CASE WHEN lease_expiry IS NULL THEN NULL ELSE owner END, "
            f"token = {p}, owner = {p}, dag_id = {p}, run_id = {p}, task_id = {p}, map_index = {p}, "
            f"try_number = {p}, host = {p}, pid = {p}, claimed_at = {p}, lease_expiry = {p}, epoch = epoch + 1 "
            f"WHERE vendor = {p} AND item_key IN ({_marks(p, len(rest))}) "
            f"AND (lease_expiry IS NULL OR lease_expiry < {p}) "
            "RETURNING item_key, epoch, taken_from",
            [*values, vendor, *rest, now],
        )
        for key, epoch, taken_from in taken:
            result.mine[str(key)] = int(epoch)
            if taken_from is None:
                result.reclaimed.add(str(key))
            else:
                result.expired[str(key)] = str(taken_from)
        rest = [key for key in rest if key not in result.mine]
        if rest:
            held = _fetch(
                conn,
                f"SELECT item_key, owner, lease_expiry, host, pid, dag_id, run_id, task_id, map_index, try_number, "
                f"token, epoch FROM {table} WHERE vendor = {p} AND item_key IN ({_marks(p, len(rest))})",
                [vendor, *rest],
            )
            for key, label, expiry, *more, token, epoch in held:
                if token == owner.token:  # already ours: a claim retried after its commit's answer was lost
                    result.mine[str(key)] = int(epoch)
                    continue
                result.elsewhere[str(key)] = Holder(str(label), float(expiry or 0.0), *more)
    return result


def take_over(
    conn: Any,
    table: str,
    placeholder: str,
    vendor: str,
    tokens: dict[str, str],
    owner: Owner,
    *,
    now: float,
    lease: float,
) -> dict[str, int]:
    """Take over the claims ``tokens`` (key -> the token seen) whose owner process is known to be gone.

    For an owner on this host whose pid no longer runs (a SIGKILLed ``airflow dags test``, a
    retried task on a one-machine deployment): its lease need not run out first. Each row's token
    is checked again in the statement, so a claim renewed or taken over meanwhile by a live
    process is left alone. Returns key -> new epoch; the items count as in doubt. Not committed.
    """
    p = placeholder
    taken: dict[str, int] = {}
    by_token: dict[str, list[str]] = {}
    for key, token in tokens.items():
        by_token.setdefault(token, []).append(key)
    for token, token_keys in by_token.items():
        for chunk in batched(token_keys, KEY_CHUNK):
            rows = _fetch(
                conn,
                f"UPDATE {table} SET taken_from = owner, token = {p}, owner = {p}, dag_id = {p}, run_id = {p}, "
                f"task_id = {p}, map_index = {p}, try_number = {p}, host = {p}, pid = {p}, claimed_at = {p}, "
                f"lease_expiry = {p}, epoch = epoch + 1 "
                f"WHERE vendor = {p} AND token = {p} AND item_key IN ({_marks(p, len(chunk))}) "
                "AND lease_expiry IS NOT NULL RETURNING item_key, epoch",
                [
                    *owner.values(now, lease),
                    vendor,
                    token,
                    *chunk,
                ],
            )
            taken.update({str(k): int(e) for k, e in rows})
    return taken


def tokens_of(conn: Any, table: str, placeholder: str, vendor: str, keys: Sequence[str]) -> dict[str, str]:
    """The token of each key's live claim (for :func:`take_over`). Not committed."""
    found: dict[str, str] = {}
    p = placeholder
    for chunk in batched(keys, KEY_CHUNK):
        rows = _fetch(
            conn,
            f"SELECT item_key, token FROM {table} WHERE vendor = {p} AND item_key IN ({_marks(p, len(chunk))}) "
            "AND lease_expiry IS NOT NULL",
            [vendor, *chunk],
        )
        found.update({str(k): str(t) for k, t in rows})
    return found


def fence(
    conn: Any, table: str, placeholder: str, vendor: str, keys: Sequence[str], token: str, *, now: float, lease: float
) -> set[str]:
    """Renew the lease of those ``keys`` still claimed by ``token`` and return them (one statement per chunk).

    Called right before a request leaves, in the transaction that writes its intent: the keys not
    returned were taken over by another attempt (or released: settled) and must not be sent.
    A lease that ran out but was not taken over is renewed: nobody else may send the item. Not committed.
    """
    held: set[str] = set()
    p = placeholder
    for chunk in batched(keys, KEY_CHUNK):
        rows = _fetch(
            conn,
            f"UPDATE {table} SET lease_expiry = {p} WHERE vendor = {p} AND token = {p} "
            f"AND lease_expiry IS NOT NULL AND item_key IN ({_marks(p, len(chunk))}) RETURNING item_key",
            [now + lease, vendor, token, *chunk],
        )
        held.update(str(r[0]) for r in rows)
    return held


def held(conn: Any, table: str, placeholder: str, vendor: str, keys: Sequence[str], token: str) -> set[str]:
    """Those of ``keys`` still claimed by ``token`` (released ones included). Not committed."""
    found: set[str] = set()
    p = placeholder
    for chunk in batched(keys, KEY_CHUNK):
        rows = _fetch(
            conn,
            f"SELECT item_key FROM {table} WHERE vendor = {p} AND token = {p} AND item_key IN ({_marks(p, len(chunk))})",
            [vendor, token, *chunk],
        )
        found.update(str(r[0]) for r in rows)
    return found


def release(conn: Any, table: str, placeholder: str, vendor: str, keys: Sequence[str], token: str) -> int:
    """Release those of ``keys`` claimed by ``token`` (their outcome is written); return how many. Not committed."""
    released = 0
    p = placeholder
    for chunk in batched(keys, KEY_CHUNK):
        rows = _fetch(
            conn,
            f"UPDATE {table} SET lease_expiry = NULL WHERE vendor = {p} AND token = {p} "
            f"AND lease_expiry IS NOT NULL AND item_key IN ({_marks(p, len(chunk))}) RETURNING item_key",
            [vendor, token, *chunk],
        )
        released += len(rows)
    return released


def renew_all(conn: Any, table: str, placeholder: str, token: str, *, now: float, lease: float) -> int:
    """Renew every live claim of ``token`` (the heartbeat); return how many are held. Not committed.

    A lease that ran out but was not taken over is renewed too: nobody else claimed the item, so
    the owner still is its only sender.
    """
    p = placeholder
    rows = _fetch(
        conn,
        f"UPDATE {table} SET lease_expiry = {p} WHERE token = {p} AND lease_expiry IS NOT NULL RETURNING item_key",
        [now + lease, token],
    )
    return len(rows)


def pid_alive(pid: int | None) -> bool:
    """Whether a process ``pid`` runs on this host (a pid we may not signal still runs)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wall_clock() -> float:
    """UTC seconds of this host (tests pass a fake one); see :func:`server_clock_sql` for a server's."""
    return time.time()


#: The database server's clock in UTC seconds, by connection type: where hosts share the ledger,
#: their leases are measured on it (as the rate budget's are), so a worker's clock never matters.
_SERVER_CLOCK = {
    "postgres": "SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8",
    "postgresql": "SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8",
    "mysql": "SELECT UNIX_TIMESTAMP(NOW(6))",
}


def server_clock_sql(conn_type: str | None) -> str | None:
    """The query of the ledger server's clock (UTC seconds), or ``None`` (a file on this host: its clock is ours)."""
    return _SERVER_CLOCK.get((conn_type or "").lower())


def server_time(conn: Any, sql: str) -> float:
    """The server's clock now, read with ``sql`` from :func:`server_clock_sql`. Not committed."""
    rows = _fetch(conn, sql, [])
    return float(rows[0][0])
