"""Xoxoday's side of the sandbox: issued point transactions and the rules of cancelling them.

Lock-free on purpose: ``SandboxState`` calls every method with its one lock held, so that a cancellation,
its attempt counters and the statistics it bumps change together.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_loyalty.sandbox.stats import zeros

if TYPE_CHECKING:
    from airflow_provider_loyalty.sandbox.stats import VendorCounters

# Point transaction status.
ISSUED = 0
CANCELLED = 1
POINT_STATUS_NAMES = ("issued", "cancelled")

MSG_CANCELLED = "Points cancelled successfully"
MSG_ALREADY_CANCELLED = "Points already cancelled"
MSG_NOT_FOUND = "Transaction not found"


class PointBook:
    """Point transactions as ``unique_id -> index`` into flat columns (status, attempts, cancellations).

    Flat ``bytearray``/``array`` columns rather than one object per transaction keep memory low: a million
    point transactions plus a million earns take roughly 300 MB.
    """

    __slots__ = ("_attempts", "_cancels", "_index", "_status", "_unknown_attempts")

    def __init__(self) -> None:
        self._index: dict[int, int] = {}
        self._status = bytearray()
        self._attempts = array("I")
        self._cancels = array("I")
        # Cancel attempts of ids the vendor never issued: counted too, without growing the columns.
        self._unknown_attempts: dict[int, int] = {}

    def add(self, unique_ids: Iterable[int], status: int = ISSUED) -> int:
        """Register point transactions; return how many were new (known ids keep their state)."""
        added = 0
        index = self._index
        for uid in unique_ids:
            if uid in index:
                continue
            index[uid] = len(self._status)
            self._status.append(status)
            added += 1
        self._attempts.extend(zeros(added))
        self._cancels.extend(zeros(added))
        return added

    def status(self, unique_id: int) -> str | None:
        """Return ``issued``/``cancelled`` for a known point transaction, else ``None``."""
        idx = self._index.get(unique_id)
        return None if idx is None else POINT_STATUS_NAMES[self._status[idx]]

    def attempts(self, unique_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Return, per id, the cancel attempts received, successful cancellations and current status."""
        out: dict[int, dict[str, Any]] = {}
        for uid in unique_ids:
            idx = self._index.get(uid)
            if idx is None:
                out[uid] = {"attempts": self._unknown_attempts.get(uid, 0), "cancelled": 0, "status": None}
            else:
                out[uid] = {
                    "attempts": self._attempts[idx],
                    "cancelled": self._cancels[idx],
                    "status": POINT_STATUS_NAMES[self._status[idx]],
                }
        return out

    def counts(self) -> dict[str, int]:
        """Return how many point transactions are known and how many of them are cancelled."""
        return {"points": len(self._status), "points_cancelled": self._status.count(CANCELLED)}

    def cancel(self, unique_ids: Sequence[int], counters: VendorCounters) -> list[tuple[int, bool, str]]:
        """Cancel each id in order (duplicates processed one by one); return ``(id, success, message)``.

        Bumps ``counters``: ids cancelled, ids seen for the first time, ids seen a second time.
        """
        results: list[tuple[int, bool, str]] = []
        index = self._index
        status = self._status
        attempts = self._attempts
        for uid in unique_ids:
            idx = index.get(uid)
            if idx is None:
                seen = self._unknown_attempts.get(uid, 0) + 1
                self._unknown_attempts[uid] = seen
                results.append((uid, False, MSG_NOT_FOUND))
            else:
                seen = attempts[idx] + 1
                attempts[idx] = seen
                if status[idx] == ISSUED:
                    status[idx] = CANCELLED
                    self._cancels[idx] += 1
                    counters.items_done += 1
                    results.append((uid, True, MSG_CANCELLED))
                else:
                    results.append((uid, False, MSG_ALREADY_CANCELLED))
            # Inline rather than a helper call: this loop runs once per id of every request.
            if seen == 1:
                counters.attempted_ids += 1
            elif seen == 2:
                counters.duplicate_ids += 1
        return results

    def reset_attempts(self) -> None:
        """Forget every attempt and cancellation count; statuses stay."""
        self._attempts = array("I", zeros(len(self._status)))
        self._cancels = array("I", zeros(len(self._status)))
        self._unknown_attempts = {}
