"""One rate budget per vendor key, shared by every task on every worker: evenly spaced slots and one penalty window.

A vendor limits requests per **key** (vendor + host + credential); tasks that use one key share
one budget. The budget is a GCRA ("generic cell rate algorithm") with no burst: one *theoretical
arrival time* (``tat``) per key. A request reserves the slot ``max(tat, now, blocked_until)`` and
moves ``tat`` one interval past it, in one atomic step, so N tasks sending at the vendor's limit
together send at the limit (not N times it), each getting slots in the order it asks. A rate-limit
answer to any task opens the key's penalty window (``blocked_until``), which every task waits out
before its next slot. The budget also keeps what ``max_requests_per_minute="auto"`` learned about
the key (JSON text), so the learned limit belongs to the key, not to the last task that saved.

Backends (each keeps the time of its server, so the workers' clocks never matter):

- :class:`PostgresBudget` — one row per key in ``loyalty_rate_budget``; a reservation is a single
  ``UPDATE ... RETURNING`` under the row's lock (autocommit);
- :class:`RedisBudget` — one hash per key, a reservation is one Lua script (``EVALSHA``) run
  atomically by Redis, timed by Redis' ``TIME``;
- :class:`MemoryBudget` — process-local (tests, and single-process runs that want the interface).

Single-process runs without ``rate_budget_conn_id`` keep the task's in-memory pacer. The figures
that chose the backends (per-request overhead, fairness across processes) are in
``benchmarks/README.md``. Generic code: no vendor is named here; callers hand in the connection.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any, Protocol

#: Table of the PostgreSQL budget (one row per vendor key).
TABLE = "loyalty_rate_budget"
#: Prefix of the Redis keys (``<prefix><budget key>``; the learned rate under ``...:learned``).
REDIS_PREFIX = "loyalty:rate:"


def budget_key(vendor: str, host: str, identity: str) -> str:
    """The key of one vendor budget: ``<vendor>:<sha256 of host and credential identity>``.

    :param identity: who the vendor counts requests against (a client id, a till, an API key's
        *name*); never a secret. It is hashed anyway, so the store does not list client ids.
    """
    digest = hashlib.sha256(f"{host.rstrip('/').lower()}\n{identity}".encode()).hexdigest()[:32]
    return f"{vendor}:{digest}"


class RateBudget(Protocol):
    """A vendor key's shared budget: slots, the penalty window, and the learned rate."""

    key: str

    def reserve(self, interval: float) -> float:
        """Reserve the key's next slot, ``interval`` seconds after the previous one; return seconds until it."""

    def reserve_numbered(self, interval: float) -> tuple[float, int]:
        """:meth:`reserve`, also returning the key's running count of reservations (this one included).

        A task compares the key's count with its own to know its share of the key's traffic: what
        the vendor accepted from the key is about what it accepted from the task divided by it.
        """

    def penalize(self, seconds: float) -> float:
        """Open (or extend) the key's penalty window to ``seconds`` from now; return seconds until it ends."""

    def blocked_for(self) -> float:
        """Seconds left of the key's penalty window (0 when none is running)."""

    def load_learned(self) -> str | None:
        """What ``"auto"`` stored for the key (JSON text), ``None`` if nothing."""

    def save_learned(self, value: str) -> None:
        """Store what ``"auto"`` learned for the key."""

    def close(self) -> None:
        """Release the connection."""


class MemoryBudget:
    """A budget in this process (threads share it): the same arithmetic as the shared backends."""

    def __init__(self, key: str = "memory", *, clock: Any = time.time) -> None:
        self.key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._tat = 0.0
        self._blocked_until = 0.0
        self._reserved = 0
        self._learned: str | None = None

    def reserve(self, interval: float) -> float:
        """See :meth:`RateBudget.reserve`."""
        return self.reserve_numbered(interval)[0]

    def reserve_numbered(self, interval: float) -> tuple[float, int]:
        """See :meth:`RateBudget.reserve_numbered`."""
        with self._lock:
            now = self._clock()
            slot = max(self._tat, self._blocked_until, now)
            self._tat = slot + interval
            self._reserved += 1
            return slot - now, self._reserved

    def penalize(self, seconds: float) -> float:
        """See :meth:`RateBudget.penalize`."""
        with self._lock:
            now = self._clock()
            self._blocked_until = max(self._blocked_until, now + seconds)
            self._tat = max(self._tat, self._blocked_until)
            return self._blocked_until - now

    def blocked_for(self) -> float:
        """See :meth:`RateBudget.blocked_for`."""
        with self._lock:
            return max(0.0, self._blocked_until - self._clock())

    def load_learned(self) -> str | None:
        """See :meth:`RateBudget.load_learned`."""
        return self._learned

    def save_learned(self, value: str) -> None:
        """See :meth:`RateBudget.save_learned`."""
        self._learned = value

    def close(self) -> None:
        """Nothing to release."""


# ----------------------------------------------------------------------------------- PostgreSQL
_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"

CREATE_SQL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    budget_key VARCHAR(100) PRIMARY KEY,
    tat DOUBLE PRECISION NOT NULL DEFAULT 0,
    blocked_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    reserved BIGINT NOT NULL DEFAULT 0,
    learned TEXT,
    updated_at TIMESTAMP WITH TIME ZONE
)"""
_ENSURE_ROW = f"INSERT INTO {TABLE} (budget_key) VALUES (%s) ON CONFLICT (budget_key) DO NOTHING"
# One statement, one row lock: concurrent reservations queue on the row and each gets its own slot.
_RESERVE = f"""
WITH now AS (SELECT {_NOW} AS t)
UPDATE {TABLE} SET tat = GREATEST(tat, blocked_until, now.t) + %s, reserved = reserved + 1
FROM now WHERE budget_key = %s
RETURNING tat - %s - now.t, reserved"""
_PENALIZE = f"""
WITH now AS (SELECT {_NOW} AS t)
UPDATE {TABLE} SET blocked_until = GREATEST(blocked_until, now.t + %s),
                   tat = GREATEST(tat, now.t + %s)
FROM now WHERE budget_key = %s
RETURNING blocked_until - now.t"""
_BLOCKED = f"SELECT GREATEST(0, blocked_until - {_NOW}) FROM {TABLE} WHERE budget_key = %s"
_LOAD = f"SELECT learned FROM {TABLE} WHERE budget_key = %s"
_SAVE = f"UPDATE {TABLE} SET learned = %s, updated_at = clock_timestamp() WHERE budget_key = %s"


class PostgresBudget:
    """The budget in a PostgreSQL table (the ledger's server database), one autocommit connection per budget.

    :param connect: returns a new DB-API connection (psycopg2 or psycopg 3, ``%s`` placeholders).
    :param key: the vendor key (:func:`budget_key`).
    """

    def __init__(self, connect: Any, key: str) -> None:
        self.key = key
        self._connect = connect
        self._lock = threading.Lock()  # one connection, used by one thread at a time
        self._conn: Any = None
        self._open()

    def _open(self) -> None:
        conn = self._connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            # A slot lost in a server crash costs nothing (the next reservation takes the next slot):
            # no WAL flush per reservation (measured: ~8 ms a statement with it on a busy disk).
            cur.execute("SET synchronous_commit = off")
            cur.execute(CREATE_SQL)
            cur.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS reserved BIGINT NOT NULL DEFAULT 0")
            cur.execute(_ENSURE_ROW, (self.key,))
        self._conn = conn

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        row = self._row(sql, params)
        return row[0] if row else None

    def _row(self, sql: str, params: tuple[Any, ...]) -> Any:
        with self._lock:
            try:
                with self._conn.cursor() as cur:
                    cur.execute(sql, params)
                    row = cur.fetchone()
            except Exception:  # a dropped connection: reopen once (the statement is idempotent enough: a lost slot)
                self._reopen()
                with self._conn.cursor() as cur:
                    cur.execute(sql, params)
                    row = cur.fetchone()
        return row

    def _reopen(self) -> None:
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001, S110 - already gone
            pass
        self._open()

    def reserve(self, interval: float) -> float:
        """See :meth:`RateBudget.reserve`."""
        return self.reserve_numbered(interval)[0]

    def reserve_numbered(self, interval: float) -> tuple[float, int]:
        """See :meth:`RateBudget.reserve_numbered`."""
        wait, number = self._row(_RESERVE, (interval, self.key, interval))
        return float(wait), int(number)

    def penalize(self, seconds: float) -> float:
        """See :meth:`RateBudget.penalize`."""
        return float(self._one(_PENALIZE, (seconds, seconds, self.key)))

    def blocked_for(self) -> float:
        """See :meth:`RateBudget.blocked_for`."""
        return float(self._one(_BLOCKED, (self.key,)) or 0.0)

    def load_learned(self) -> str | None:
        """See :meth:`RateBudget.load_learned`."""
        value = self._one(_LOAD, (self.key,))
        return None if value is None else str(value)

    def save_learned(self, value: str) -> None:
        """See :meth:`RateBudget.save_learned`."""
        with self._lock, self._conn.cursor() as cur:
            cur.execute(_SAVE, (value, self.key))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


# ---------------------------------------------------------------------------------------- Redis
# Redis runs a script atomically; TIME is Redis' clock. Numbers go back as text (Lua numbers would
# be truncated to integers on the way out).
_LUA_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
local blocked = tonumber(redis.call('HGET', KEYS[1], 'blocked_until') or '0')
local slot = math.max(tat, blocked, now)
redis.call('HSET', KEYS[1], 'tat', string.format('%.6f', slot + tonumber(ARGV[1])))
local n = redis.call('HINCRBY', KEYS[1], 'reserved', 1)
return {string.format('%.6f', slot - now), n}
"""
_LUA_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local blocked = math.max(tonumber(redis.call('HGET', KEYS[1], 'blocked_until') or '0'), now + tonumber(ARGV[1]))
local tat = math.max(tonumber(redis.call('HGET', KEYS[1], 'tat') or '0'), blocked)
redis.call('HSET', KEYS[1], 'blocked_until', string.format('%.6f', blocked), 'tat', string.format('%.6f', tat))
return string.format('%.6f', blocked - now)
"""
_LUA_BLOCKED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local blocked = tonumber(redis.call('HGET', KEYS[1], 'blocked_until') or '0')
return string.format('%.6f', math.max(0, blocked - now))
"""


class RedisBudget:
    """The budget in Redis (where Celery runs): one hash per key, each step one atomic Lua script.

    :param client: a ``redis.Redis`` client (thread-safe: it keeps a connection pool).
    :param key: the vendor key (:func:`budget_key`).
    """

    def __init__(self, client: Any, key: str) -> None:
        self.key = key
        self._client = client
        self._name = f"{REDIS_PREFIX}{key}"
        self._reserve = client.register_script(_LUA_RESERVE)
        self._penalize = client.register_script(_LUA_PENALIZE)
        self._blocked = client.register_script(_LUA_BLOCKED)

    def reserve(self, interval: float) -> float:
        """See :meth:`RateBudget.reserve`."""
        return self.reserve_numbered(interval)[0]

    def reserve_numbered(self, interval: float) -> tuple[float, int]:
        """See :meth:`RateBudget.reserve_numbered`."""
        wait, number = self._reserve(keys=[self._name], args=[repr(float(interval))])
        return float(wait), int(number)

    def penalize(self, seconds: float) -> float:
        """See :meth:`RateBudget.penalize`."""
        return float(self._penalize(keys=[self._name], args=[repr(float(seconds))]))

    def blocked_for(self) -> float:
        """See :meth:`RateBudget.blocked_for`."""
        return float(self._blocked(keys=[self._name]))

    def load_learned(self) -> str | None:
        """See :meth:`RateBudget.load_learned`."""
        value = self._client.get(f"{self._name}:learned")
        return None if value is None else value.decode() if isinstance(value, bytes) else str(value)

    def save_learned(self, value: str) -> None:
        """See :meth:`RateBudget.save_learned`."""
        self._client.set(f"{self._name}:learned", value)

    def close(self) -> None:
        """Release the client's pool."""
        self._client.close()


# ----------------------------------------------------------------------------------- connections
def open_budget(conn_id: str, key: str) -> RateBudget:
    """Open the budget of ``key`` in the store Airflow connection ``conn_id`` names.

    ``redis`` connections (host, port, password, extra ``db``, ``ssl``) give a :class:`RedisBudget`;
    ``postgres``/``postgresql`` ones (host, port, schema = database, login, password) a
    :class:`PostgresBudget`.

    :raises ValueError: for any other connection type.
    """
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    kind = (conn.conn_type or "").lower()
    extra = conn.extra_dejson
    if kind == "redis":
        import redis

        client = redis.Redis(
            host=conn.host or "localhost",
            port=int(conn.port or 6379),
            db=int(extra.get("db", 0)),
            password=conn.password or None,
            username=conn.login or None,
            ssl=bool(extra.get("ssl", False)),
            socket_timeout=10,
        )
        return RedisBudget(client, key)
    if kind in ("postgres", "postgresql"):
        import psycopg2

        def connect() -> Any:
            return psycopg2.connect(
                host=conn.host or "localhost",
                port=int(conn.port or 5432),
                dbname=conn.schema or "postgres",
                user=conn.login,
                password=conn.password,
                connect_timeout=10,
                application_name="loyalty-rate-budget",
            )

        return PostgresBudget(connect, key)
    raise ValueError(
        f"rate_budget_conn_id {conn_id!r} is a {conn.conn_type!r} connection; "
        "a shared rate budget needs a 'redis' or 'postgres' connection"
    )
