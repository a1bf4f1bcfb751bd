"""Where the Reversals page finds the ledger, and the error it answers when it cannot read it.

The ledger connection is one setting, ``[loyalty] ledger_conn_id`` (env
``AIRFLOW__LOYALTY__LEDGER_CONN_ID``, default ``loyalty_warehouse``), with ``[loyalty] ledger_table``
(default ``loyalty_reversal_ledger``).
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_loyalty.ledger import DEFAULT_TABLE, check_table_name

CONFIG_SECTION = "loyalty"
DEFAULT_CONN_ID = "loyalty_warehouse"


class LedgerUnavailable(Exception):
    """The ledger cannot be read right now.

    :param reason: what to tell the user; names the connection id and table, never the connection's
        host, login, password or extras.
    :param busy: a writer holds the ledger (DuckDB's single-writer lock); retrying soon will work.
    :param missing: the ledger table does not exist yet (no reversal task has run).
    """

    def __init__(self, reason: str, *, busy: bool = False, missing: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.busy = busy
        self.missing = missing


@dataclass(frozen=True)
class LedgerSettings:
    """Where the page reads the ledger.

    :param conn_id: Airflow connection of the ledger (any common-sql ``DbApiHook``).
    :param table: ledger table, optionally schema-qualified.
    """

    conn_id: str = DEFAULT_CONN_ID
    table: str = DEFAULT_TABLE

    @classmethod
    def from_config(cls) -> LedgerSettings:
        """Read ``[loyalty] ledger_conn_id`` and ``[loyalty] ledger_table`` (raises ``LedgerUnavailable`` if bad)."""
        from airflow.configuration import conf

        conn_id = (conf.get(CONFIG_SECTION, "ledger_conn_id", fallback=DEFAULT_CONN_ID) or DEFAULT_CONN_ID).strip()
        table = (conf.get(CONFIG_SECTION, "ledger_table", fallback=DEFAULT_TABLE) or DEFAULT_TABLE).strip()
        try:
            check_table_name(table)
        except ValueError:
            raise LedgerUnavailable(
                "the [loyalty] ledger_table setting is not a table name (letters, digits, _ and an optional schema)"
            ) from None
        return cls(conn_id=conn_id, table=table)
