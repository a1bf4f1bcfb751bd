"""CancelPointsOperator: cancel Xoxoday Plum points issuances whose ids come from XCom."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_loyalty.operators._inputs import InputErrors, load_rows, normalised_keys, positive_int
from airflow_provider_loyalty.operators._reversal import ItemResult, ReversalOperator, chunked

if TYPE_CHECKING:
    from airflow_provider_loyalty.hooks.xoxoday import XoxodayHook

from airflow_provider_loyalty.vendor_limits import XOXODAY_MAX_BATCH_SIZE as MAX_BATCH_SIZE


def parse_unique_ids(value: Any, owner: str = "CancelPointsOperator") -> tuple[list[int], int, int]:
    """Validate an XCom of unique_ids; return ``(unique ids in first-seen order, rows, duplicates)``.

    Accepts ints or digit strings, 1-column rows (``[(123,), (456,)]``), dicts with ``unique_id``,
    and the string a non-native Jinja render makes of any of these.

    :raises AirflowFailException: naming the first offending rows, before anything is sent.
    """
    rows = load_rows(value, "unique_ids", owner)
    errors = InputErrors("unique_ids", owner)
    ids: dict[int, None] = {}
    for position, row in enumerate(rows):
        raw = row
        if isinstance(row, (list, tuple)):
            if len(row) != 1:
                errors.add(position, row, f"a row of {len(row)} columns; expected 1 (unique_id)")
                continue
            raw = row[0]
        elif isinstance(row, dict):
            keys = normalised_keys(row)
            if "uniqueid" not in keys:
                errors.add(position, row, "a dict without unique_id")
                continue
            raw = keys["uniqueid"]
        number, reason = positive_int(raw)
        if number is None:
            errors.add(position, raw, reason)
        else:
            ids[number] = None
    errors.raise_if_any()
    return list(ids), len(rows), len(rows) - len(ids)


class CancelPointsOperator(ReversalOperator[Sequence[int]]):
    """Cancel Xoxoday Plum points transactions (``storesAdmin.mutation.cancelBalance``), each once.

    :param unique_ids: (templated) the ids to cancel: an XComArg such as ``extract.output``, a
        Jinja ``xcom_pull`` string, or a list of ints / digit strings / 1-column rows / dicts with
        ``unique_id``.
    :param xoxoday_conn_id: the ``xoxoday`` connection.
    :param batch_size: unique_ids per request (1-500).
    :param dry_run: plan and log only; no vendor call at all.
    :param ledger_conn_id: SQL connection of the outcomes ledger (skips what is done, records outcomes).
    :param ledger_table: ledger table name.
    :param max_failed_ratio: tolerated share of failed ids before the task fails.
    :param max_requests_per_minute: request rate of this task (``None``: no limit; Xoxoday
        documents none, its rate-limit answers are honoured whatever the setting).
    :param max_concurrency: requests in flight at once.
    :param hook_params: extra keyword arguments of the hook (``timeout``, ``retry_policy``...).
    :param retry_refused: resend items the ledger records as refused for good (default: report them
        as failed again without sending).
    """

    template_fields: Sequence[str] = ("unique_ids", *ReversalOperator.template_fields)
    ui_color = "#f4d9ff"
    vendor = "xoxoday"
    what = "unique_ids"

    def __init__(
        self,
        *,
        unique_ids: Any,
        xoxoday_conn_id: str = "xoxoday_default",
        batch_size: int = MAX_BATCH_SIZE,
        dry_run: bool = False,
        ledger_conn_id: str | None = None,
        ledger_table: str = "loyalty_reversal_ledger",
        max_failed_ratio: float = 0.0,
        max_requests_per_minute: float | None = None,
        max_concurrency: int = 8,
        hook_params: dict[str, Any] | None = None,
        retry_refused: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            dry_run=dry_run,
            ledger_conn_id=ledger_conn_id,
            ledger_table=ledger_table,
            max_failed_ratio=max_failed_ratio,
            max_requests_per_minute=max_requests_per_minute,
            max_concurrency=max_concurrency,
            hook_params=hook_params,
            retry_refused=retry_refused,
            **kwargs,
        )
        if not 1 <= int(batch_size) <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size!r}")
        self.unique_ids = unique_ids
        self.xoxoday_conn_id = xoxoday_conn_id
        self.batch_size = int(batch_size)

    @cached_property
    def hook(self) -> XoxodayHook:
        """The Xoxoday hook, paced for this task."""
        from airflow_provider_loyalty.hooks.xoxoday import XoxodayHook

        return XoxodayHook(
            self.xoxoday_conn_id,
            max_requests_per_minute=self.max_requests_per_minute,
            max_concurrency=self.max_concurrency,
            **self.hook_params,
        )

    def parse(self) -> tuple[list[int], int, int]:
        """Validate ``unique_ids``."""
        return parse_unique_ids(self.unique_ids, type(self).__name__)

    def item_keys(self, items: list[int]) -> Iterator[str]:
        """Ledger keys: the unique_id as text."""
        return (str(uid) for uid in items)

    def ident(self, key: str) -> dict[str, Any]:
        """Identity of an item from its ledger key."""
        return {"unique_id": int(key)}

    def drop_done(self, items: list[int], done: set[str]) -> list[int]:
        """Keep the ids the ledger does not record as done."""
        return [uid for uid in items if str(uid) not in done]

    def plan(self, items: list[int]) -> Iterator[Sequence[int]]:
        """Batches of ``batch_size`` ids."""
        return chunked(items, self.batch_size)

    def describe(self, request: Sequence[int]) -> str:
        """Count of ids in a batch."""
        return f"{len(request)} unique_ids"

    def request_items(self, request: Sequence[int], code: str, message: str, *, transient: bool) -> list[ItemResult]:
        """A failed result per id of the batch (the request as a whole failed: nothing is settled)."""
        return [
            ItemResult(str(uid), {"unique_id": uid}, False, code, message, transient, settles=False) for uid in request
        ]

    def send(self, request: Sequence[int]) -> list[ItemResult]:
        """Cancel one batch; a refused id is a permanent failure, an unmentioned one a transient one."""
        result, failed = self.call_vendor(request, self.hook.cancel_points, request)
        if result is None:
            return failed
        doubt = result.after_ambiguous_attempt
        results = []
        for o in result.outcomes:
            ident = {"unique_id": o.unique_id}
            if o.success:
                results.append(ItemResult(str(o.unique_id), ident, True, None, o.message))
            elif o.success is None:
                results.append(ItemResult(str(o.unique_id), ident, False, "unknown", o.message, transient=True))
            elif doubt:
                message = f"in doubt, an earlier attempt may have applied it: {o.message}"
                results.append(ItemResult(str(o.unique_id), ident, False, "in_doubt", message, settles=False))
            else:
                results.append(ItemResult(str(o.unique_id), ident, False, "rejected", o.message))
        return results
