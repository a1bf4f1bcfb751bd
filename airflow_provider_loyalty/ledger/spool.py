"""Answered outcomes the ledger could not take, kept in an Airflow Variable until it can.

When the ledger goes away mid-run, the answers of requests already in flight must not be lost:
the vendor applied them. They are written to the Variable
``loyalty_ledger_spool__<conn>__<table>__<dag>__<task>__<map_index>`` (in the metadata database,
which every worker reaches) and replayed into the ledger before the next try of the same task —
or tomorrow's run of it — sends anything. The key holds no run id on purpose: a task whose
retries ran out hands its spool to the next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from airflow_provider_loyalty._variables import delete_variable, get_variable, set_variable
from airflow_provider_loyalty.ledger.schema import LedgerRow, columns

log = logging.getLogger(__name__)

_PREFIX = "loyalty_ledger_spool__"
_MAX_KEY = 250  # Airflow's Variable.key column


def spool_key(conn_id: str, table: str, run: dict[str, Any]) -> str:
    """The Variable key of one task's spool."""
    parts = [conn_id, table, str(run.get("dag_id")), str(run.get("task_id")), str(run.get("map_index", -1))]
    key = _PREFIX + "__".join(parts)
    if len(key) > _MAX_KEY:
        digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
        key = f"{key[: _MAX_KEY - 34]}__{digest}"
    return key


class LedgerSpool:
    """The rows one task could not write to its ledger.

    :param key: the Variable key (:func:`spool_key`).
    """

    description = "Ledger rows waiting for the ledger to come back (airflow-provider-loyalty); replayed by the next try"

    def __init__(self, key: str) -> None:
        self.key = key
        self._rows: list[LedgerRow] | None = None

    def pending(self) -> list[LedgerRow]:
        """The rows kept by earlier tries (read once; raises when the Variable cannot be read)."""
        if self._rows is None:
            self._rows = self._read()
        return list(self._rows)

    def _read(self) -> list[LedgerRow]:
        text = get_variable(self.key)
        return [_decode(row) for row in json.loads(text)] if text else []

    def add(self, rows: list[LedgerRow]) -> None:
        """Keep ``rows`` with those already kept (raises when the Variable cannot be written).

        Read afresh each time: another run of the same task (``max_active_runs`` > 1) may have added
        rows since; the window between this read and the write stays a few milliseconds.
        """
        kept = self._read() + list(rows)
        set_variable(self.key, json.dumps([_encode(row) for row in kept]), self.description)
        self._rows = kept

    def clear(self) -> None:
        """Forget the rows this object replayed (they are in the ledger now); keep any added since."""
        if not self._rows:
            return
        replayed = {json.dumps(_encode(row)) for row in self._rows}
        left = [row for row in self._read() if json.dumps(_encode(row)) not in replayed]
        if left:
            set_variable(self.key, json.dumps([_encode(row) for row in left]), self.description)
        else:
            delete_variable(self.key)
        self._rows = []


def _encode(row: LedgerRow) -> dict[str, Any]:
    """A row as JSON, by column name: a release that adds a column still reads what an older one kept."""
    names = columns()
    values = dict(zip(names, row.values(names), strict=True))
    values["recorded_at"] = row.recorded_at.isoformat()
    if row.approved_at is not None:
        values["approved_at"] = row.approved_at.isoformat()
    return values


def _decode(values: dict[str, Any] | list[Any]) -> LedgerRow:
    """A kept row; a list is the layout of earlier releases (the columns they had, in table order)."""
    names = columns()
    named = dict(zip(names, values, strict=False)) if isinstance(values, list) else dict(values)
    return LedgerRow.from_db([named.get(name) for name in names], names)
