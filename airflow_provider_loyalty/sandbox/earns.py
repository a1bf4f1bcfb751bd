"""Capillary's side of the sandbox: promotions, earns and the rules of revoking them.

Lock-free on purpose: ``SandboxState`` calls every method with its one lock held, so that a revocation,
its attempt counters and the statistics it bumps change together.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_loyalty.sandbox.stats import zeros

if TYPE_CHECKING:
    from airflow_provider_loyalty.sandbox.stats import VendorCounters

# Earn state.
UNREDEEMED = 0
REDEEMED = 1
REVOKED = 2
EARN_STATE_NAMES = ("unredeemed", "redeemed", "revoked")

REVOCABLE_PROMOTION_TYPES = frozenset({"CART"})
PROMOTION_TYPES = frozenset({"CART", "POS", "CODE"})

CODE_REDEEMED = 729
CODE_NOT_REVOCABLE = 730
CODE_INVALID_EARN = 731
ERROR_MESSAGES = {
    CODE_REDEEMED: "Earn already redeemed",
    CODE_NOT_REVOCABLE: "Promotion of type POS/CODE cannot be revoked",
    CODE_INVALID_EARN: "Invalid earn id",
}


class EarnBook:
    """Promotions (id and type lists) and earns as ``earn_id -> index`` into flat columns.

    Earn columns: customer id, promotion index, state, attempts, revocations; flat arrays rather than one
    object per earn keep a million of them compact.
    """

    __slots__ = (
        "_attempts",
        "_customer",
        "_index",
        "_promo",
        "_promo_ids",
        "_promo_index",
        "_promo_types",
        "_revokes",
        "_state",
        "_unknown_attempts",
    )

    def __init__(self) -> None:
        self._promo_index: dict[str, int] = {}
        self._promo_ids: list[str] = []
        self._promo_types: list[str] = []
        self._index: dict[str, int] = {}
        self._customer = array("q")
        self._promo = array("I")
        self._state = bytearray()
        self._attempts = array("I")
        self._revokes = array("I")
        # Revoke attempts of earn ids the vendor never issued: counted too, without growing the columns.
        self._unknown_attempts: dict[str, int] = {}

    # ------------------------------------------------------------------ loading
    def add_promotions(self, promotions: Mapping[str, str]) -> None:
        """Register promotions as ``promotion_id -> type`` (``CART``, ``POS`` or ``CODE``)."""
        for promo_id, promo_type in promotions.items():
            self._promotion(promo_id, promo_type.upper())

    def add_earns(self, earns: Iterable[tuple[int, str, str, bool]]) -> int:
        """Register earns ``(customer_id, promotion_id, earn_id, redeemed)``; return how many were new.

        Unknown promotions are registered as ``CART``.
        """
        added = 0
        index = self._index
        promo_index = self._promo_index
        customers = self._customer
        promos = self._promo
        states = self._state
        for customer_id, promo_id, earn_id, redeemed in earns:
            if earn_id in index:
                continue
            pidx = promo_index.get(promo_id)
            if pidx is None:
                pidx = self._promotion(promo_id, "CART")
            index[earn_id] = len(states)
            customers.append(customer_id)
            promos.append(pidx)
            states.append(REDEEMED if redeemed else UNREDEEMED)
            added += 1
        self._attempts.extend(zeros(added))
        self._revokes.extend(zeros(added))
        return added

    def _promotion(self, promo_id: str, promo_type: str) -> int:
        if promo_type not in PROMOTION_TYPES:
            raise ValueError(f"unknown promotion type {promo_type!r}")
        pidx = self._promo_index.get(promo_id)
        if pidx is None:
            pidx = len(self._promo_ids)
            self._promo_index[promo_id] = pidx
            self._promo_ids.append(promo_id)
            self._promo_types.append(promo_type)
        else:
            self._promo_types[pidx] = promo_type
        return pidx

    # ------------------------------------------------------------------ queries
    def earn(self, earn_id: str) -> tuple[int, str, str] | None:
        """Return ``(customer_id, promotion_id, state)`` of a known earn, else ``None``."""
        idx = self._index.get(earn_id)
        if idx is None:
            return None
        return (
            self._customer[idx],
            self._promo_ids[self._promo[idx]],
            EARN_STATE_NAMES[self._state[idx]],
        )

    def promotion_type(self, promotion_id: str) -> str | None:
        """Return the type of a known promotion, else ``None``."""
        pidx = self._promo_index.get(promotion_id)
        return None if pidx is None else self._promo_types[pidx]

    def attempts(self, earn_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return, per earn id, the revoke attempts received, successful revocations and current state."""
        out: dict[str, dict[str, Any]] = {}
        for earn_id in earn_ids:
            idx = self._index.get(earn_id)
            if idx is None:
                out[earn_id] = {
                    "attempts": self._unknown_attempts.get(earn_id, 0),
                    "revoked": 0,
                    "state": None,
                }
            else:
                out[earn_id] = {
                    "attempts": self._attempts[idx],
                    "revoked": self._revokes[idx],
                    "state": EARN_STATE_NAMES[self._state[idx]],
                }
        return out

    def counts(self) -> dict[str, int]:
        """Return how many promotions and earns are known, and how many earns are redeemed or revoked."""
        return {
            "promotions": len(self._promo_ids),
            "earns": len(self._state),
            "earns_redeemed": self._state.count(REDEEMED),
            "earns_revoked": self._state.count(REVOKED),
        }

    # ------------------------------------------------------------------ revokeEarn
    def revoke(
        self,
        customer_id: int,
        details: Sequence[tuple[str, Sequence[str]]],
        counters: VendorCounters,
    ) -> tuple[dict[str, list[str]], dict[str, int], dict[tuple[int, str], list[str]]]:
        """Revoke earns of one customer, promotion by promotion, in request order.

        Bumps ``counters``: earns revoked, ids seen for the first time, ids seen a second time.

        :return: ``(revoked, requested, errors)``: revoked earn ids per promotion, earn ids requested per
            promotion, and failed earn ids grouped by ``(error code, promotion id)`` in first-seen order.
        """
        revoked: dict[str, list[str]] = {}
        requested: dict[str, int] = {}
        errors: dict[tuple[int, str], list[str]] = {}
        index = self._index
        customers = self._customer
        promos = self._promo
        states = self._state
        attempts = self._attempts
        for promo_id, earn_ids in details:
            pidx = self._promo_index.get(promo_id)
            revocable = pidx is None or self._promo_types[pidx] in REVOCABLE_PROMOTION_TYPES
            owner = (customer_id, pidx)
            requested[promo_id] = requested.get(promo_id, 0) + len(earn_ids)
            for earn_id in earn_ids:
                idx = index.get(earn_id)
                if idx is None:
                    seen = self._unknown_attempts.get(earn_id, 0) + 1
                    self._unknown_attempts[earn_id] = seen
                else:
                    seen = attempts[idx] + 1
                    attempts[idx] = seen
                # Inline rather than a helper call: this loop runs once per earn id of every request.
                if seen == 1:
                    counters.attempted_ids += 1
                elif seen == 2:
                    counters.duplicate_ids += 1
                if not revocable:
                    code = CODE_NOT_REVOCABLE
                elif idx is None or states[idx] == REVOKED or (customers[idx], promos[idx]) != owner:
                    code = CODE_INVALID_EARN
                elif states[idx] == REDEEMED:
                    code = CODE_REDEEMED
                else:
                    assert idx is not None
                    states[idx] = REVOKED
                    self._revokes[idx] += 1
                    counters.items_done += 1
                    revoked.setdefault(promo_id, []).append(earn_id)
                    continue
                errors.setdefault((code, promo_id), []).append(earn_id)
        return revoked, requested, errors

    def reset_attempts(self) -> None:
        """Forget every attempt and revocation count; earn states stay."""
        self._attempts = array("I", zeros(len(self._state)))
        self._revokes = array("I", zeros(len(self._state)))
        self._unknown_attempts = {}
