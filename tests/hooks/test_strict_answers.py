"""Findings of the adversarial review, one row each: success only when the answer says so for exactly that item.

The pure interpretation functions are fed the answer as the vendor would send it (JSON, parsed by
our models); two HTTP-level tests check the same through the hooks.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_loyalty.hooks._token_store import MemoryTokenStore
from airflow_provider_loyalty.hooks.capillary import CapillaryHook, interpret_revoke
from airflow_provider_loyalty.hooks.xoxoday import XoxodayHook, interpret_cancel
from airflow_provider_loyalty.items import EarnItem, PointItem
from airflow_provider_loyalty.models import (
    CancelPointsResponse,
    RevokeEarnResponse,
)
from airflow_provider_loyalty.outcomes import FailureKind
from tests.conftest import CAPILLARY_URL, XOXODAY_URL, FakeClock
from tests.hooks.conftest import success, verdict

P1, P2, P9 = "promo-1", "promo-2", "promo-9"
E1, E2 = "earn-1", "earn-2"


# ------------------------------------------------------------------------------------------ Capillary
def revoke(customer: int, details: dict[str, list[str]], answer: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    items = [EarnItem(customer, p, e) for p, earns in details.items() for e in earns]
    result = interpret_revoke(items, RevokeEarnResponse.model_validate(answer))
    return [(o.item.promotion_id, o.item.earn_id, verdict(o), o.message) for o in result.outcomes]


def ok(promo: Any, *earns: Any, status: Any = "SUCCESS") -> dict[str, Any]:
    return {"promotionId": promo, "revokedEarnIds": list(earns), "status": status}


def answer(customer: Any, *details: dict[str, Any], errors: list | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"revokedDetails": list(details)}
    if customer is not ...:
        data["customerId"] = customer
    return {"data": data, "errors": errors or []}


CAPILLARY_CASES = [
    # (request details, answer, expected [(promotion, earn, status, message fragment)])
    (
        {P1: [E1]},
        answer(7, ok(P1, E1)),
        [(P1, E1, "unknown", "answer names customer 7, not 5")],
    ),
    (
        {P1: [E1]},
        answer(7, errors=[{"code": 729, "message": "redeemed", "promotionId": P1, "earnIds": [E1]}]),
        [(P1, E1, "unknown", "answer names customer 7, not 5")],
    ),
    (
        {P1: [E1]},
        answer("5", ok(P1, E1)),
        [(P1, E1, "unknown", 'answer names customer "5" (string), not 5')],
    ),
    (
        {P1: [E1]},
        answer(5.0, ok(P1, E1)),
        [(P1, E1, "unknown", "answer names customer 5.0 (number), not 5")],
    ),
    (
        {P1: [E1]},
        answer(..., ok(P1, E1)),
        [(P1, E1, "unknown", "no data.customerId")],
    ),
    (
        {P1: [E1, E2]},
        {
            "data": {"code": 731, "message": "Invalid earn id"},
            "errors": [{"code": 731, "message": "Invalid earn id", "promotionId": P1, "earnIds": [E1]}],
        },
        [(P1, E1, "failed", "Invalid earn id"), (P1, E2, "unknown", "neither revoked nor named")],
    ),
    (
        {P1: [E1], P2: [E1]},
        answer(5, {"revokedEarnIds": [E1], "status": "SUCCESS"}),
        [(P1, E1, "unknown", "without a usable promotionId"), (P2, E1, "unknown", "without a usable promotionId")],
    ),
    (
        {P1: [E1]},
        answer(5, {"revokedEarnIds": [E1], "status": "SUCCESS"}),
        [(P1, E1, "unknown", "without a usable promotionId")],
    ),
    (
        {"123": [E1]},
        answer(5, ok(123, E1)),
        [("123", E1, "unknown", "without a usable promotionId (got 123)")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1, status="FAILED")),
        [(P1, E1, "unknown", 'status "FAILED" (string)')],
    ),
    (
        {P1: [E1]},
        answer(5, {"promotionId": P1, "revokedEarnIds": [E1]}),
        [(P1, E1, "unknown", "with no status")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1, status=True)),
        [(P1, E1, "unknown", "status true (boolean)")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1, status="success")),
        [(P1, E1, "revoked", "success")],
    ),
    (
        {P1: [E1, E2]},
        answer(
            5,
            ok(P1, E1, status="PARTIAL_SUCCESS"),
            errors=[{"code": 729, "message": "Earn already redeemed", "promotionId": P1, "earnIds": [E2]}],
        ),
        [(P1, E1, "revoked", "PARTIAL_SUCCESS"), (P1, E2, "failed", "Earn already redeemed")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), ok(P1, E1, status="FAILED")),
        [(P1, E1, "unknown", "listed as revoked, but a revokedDetails entry (promotion promo-1) lists it")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), errors=[{"code": 729, "message": "Earn already redeemed", "earnIds": [E1]}]),
        [(P1, E1, "unknown", "listed as revoked and in errors[] (code 729")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), errors=[{"code": 500, "message": "partial failure"}]),
        [(P1, E1, "unknown", "listed as revoked and in errors[]")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), ok(P1, E1)),
        [(P1, E1, "revoked", "SUCCESS")],
    ),
    (
        {P1: ["7"]},
        answer(5, ok(P1, 7)),
        [(P1, "7", "unknown", "neither revoked nor named")],
    ),
    (
        {P1: [E1], P2: [E2]},
        answer(5, ok(P2, E1), ok(P9, E1, E2)),
        [(P1, E1, "unknown", "neither revoked nor named"), (P2, E2, "unknown", "neither revoked nor named")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), errors=[{"code": 1, "message": "?", "promotionId": 99, "earnIds": [E1]}]),
        [(P1, E1, "unknown", "promotionId 99 (not a string)")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), errors=[{"code": 729, "message": "redeemed", "promotionId": P9, "earnIds": [E2]}]),
        [(P1, E1, "revoked", "SUCCESS")],
    ),
    # errors[] entries we cannot attribute precisely: every earn they could concern is unknown
    (
        {P1: ["123"]},
        answer(5, ok(P1, "123"), errors=[{"code": 729, "message": "redeemed", "promotionId": P1, "earnIds": [123]}]),
        [(P1, "123", "unknown", "listed as revoked, but an errors[] entry's earnIds holds 123, not a string")],
    ),
    (
        {P1: ["123"], P2: [E2]},
        answer(
            5,
            ok(P1, "123"),
            ok(P2, E2),
            errors=[{"code": 729, "message": "redeemed", "promotionId": P1, "earnIds": [123]}],
        ),
        [(P1, "123", "unknown", "earnIds holds 123"), (P2, E2, "revoked", "SUCCESS")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), errors=[{"code": 729, "message": "x", "promotionId": P1, "earnIds": [[E1]]}]),
        [(P1, E1, "unknown", 'earnIds holds ["earn-1"] (array), not a string')],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), errors=[{"code": 729, "message": "x", "promotionId": P1, "earnIds": [E1, None]}]),
        [(P1, E1, "unknown", "earnIds holds null, not a string")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), errors=["earn-1: already redeemed (729)"]),
        [(P1, E1, "unknown", 'errors[] holds "earn-1: already redeemed (729)" (string), not an object')],
    ),
    (
        {P1: [E1], P2: [E2]},
        answer(5, ok(P1, E1), ok(P2, E2), errors=[729]),
        [(P1, E1, "unknown", "errors[] holds 729, not an object"), (P2, E2, "unknown", "errors[] holds 729")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), errors=[None]),
        [(P1, E1, "unknown", "errors[] holds null, not an object")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), errors=[[E1]]),
        [(P1, E1, "unknown", "(array), not an object")],
    ),
    (
        {P1: [E1]},
        answer(5, errors=["refused"]),
        [(P1, E1, "unknown", 'errors[] holds "refused" (string), not an object')],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), errors=[{"code": 729, "message": "x", "promotionId": "", "earnIds": [E1]}]),
        [(P1, E1, "unknown", 'names promotionId "" (string) (blank)')],
    ),
    (
        {P1: [E1, E2]},
        answer(5, ok(P1, E1, E2), errors=[{"code": 729, "message": "x", "promotionId": "  ", "earnIds": [E1]}]),
        [(P1, E1, "unknown", "(blank)"), (P1, E2, "revoked", "SUCCESS")],
    ),
    (
        {P1: [E1], P2: [E2]},
        answer(5, ok(P1, E1), ok(P2, E2), errors=[{"code": 729, "message": "x", "promotionId": ""}]),
        [(P1, E1, "unknown", "(blank)"), (P2, E2, "unknown", "(blank)")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), errors=[{"unexpected": "shape"}]),
        [(P1, E1, "unknown", "listed as revoked and in errors[]")],
    ),
    # the documented failure shape (data.code/message) beside revokedDetails contradicts them
    (
        {P1: [E1]},
        {"data": {"customerId": 5, "revokedDetails": [ok(P1, E1)], "code": 500, "message": "Revoke failed"}},
        [(P1, E1, "unknown", "listed as revoked, but data.code 500 (Revoke failed) accompanies revokedDetails")],
    ),
    (
        {P1: [E1]},
        {"data": {"customerId": 5, "revokedDetails": [ok(P1, E1)], "code": 500}, "errors": []},
        [(P1, E1, "unknown", "data.code 500 (no message)")],
    ),
    (
        {P1: [E1]},
        {"data": {"customerId": 5, "revokedDetails": [ok(P1, E1)], "message": "Revoke failed"}},
        [(P1, E1, "unknown", "data.message (Revoke failed)")],
    ),
]
CAPILLARY_IDS = [
    "customer_other_than_requested_voids_success",
    "customer_other_than_requested_voids_failure",
    "customer_as_string",
    "customer_as_float",
    "customer_missing_with_revoked_earns",
    "customer_missing_in_second_documented_shape_failures_count",
    "detail_without_promotion_earn_under_two_promotions",
    "detail_without_promotion_earn_under_one_promotion_strict",
    "detail_promotion_as_number",
    "detail_status_failed",
    "detail_status_missing",
    "detail_status_not_a_string",
    "detail_status_lowercase_success",
    "detail_partial_success_revokes_the_listed_earns_only",
    "detail_success_and_failed_entries_contradict",
    "revoked_and_in_errors_by_earn",
    "revoked_and_whole_request_error",
    "revoked_twice_consistently",
    "earn_id_as_number_is_not_ours",
    "earn_revoked_under_another_promotion_only",
    "error_with_non_string_promotion_casts_doubt",
    "error_about_other_earns_of_another_promotion_is_ignored",
    "error_names_earn_as_number",
    "error_names_earn_as_number_only_its_promotion_in_doubt",
    "error_earn_ids_nested_list",
    "error_earn_ids_hold_null",
    "error_entry_bare_string",
    "error_entry_number_voids_every_revoked_earn",
    "error_entry_null",
    "error_entry_array",
    "error_entry_bare_string_without_claims",
    "error_promotion_empty_string",
    "error_promotion_blank_narrowed_by_earn_ids",
    "error_promotion_empty_string_without_earn_ids_whole_request",
    "error_entry_of_unknown_shape_is_whole_request",
    "data_code_and_message_beside_revoked_details",
    "data_code_without_message_beside_revoked_details",
    "data_message_without_code_beside_revoked_details",
]


@pytest.mark.parametrize(("details", "body", "expected"), CAPILLARY_CASES, ids=CAPILLARY_IDS)
def test_capillary_findings(details, body, expected) -> None:
    got = revoke(5, details, body)
    assert [(p, e, s) for p, e, s, _ in got] == [(p, e, s) for p, e, s, _ in expected]
    for (_, _, _, message), (_, _, _, fragment) in zip(got, expected, strict=True):
        assert fragment in message


#: an outcome by status, failure kind and code: revoked/cancelled, refused for good, or unknown (in doubt)
DONE = (True, None, None)
UNKNOWN = (False, FailureKind.TRANSIENT, "unknown")


def refused(code: str) -> tuple[bool, FailureKind, str]:
    return (False, FailureKind.PERMANENT, code)


CAPILLARY_DOUBT_CASES = [
    # (request details, answer, expected [(promotion, earn, (ok, kind, code), message fragment)])
    (
        {P1: [E1]},
        answer(
            5,
            ok(P1, E1),
            errors=[{"code": 729, "message": "Earn already redeemed", "promotionId": P2, "earnIds": [E1]}],
        ),
        [(P1, E1, UNKNOWN, "an errors[] entry (code 729: Earn already redeemed) names it under promotionId promo-2")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), ok(P2, E1, status="FAILED")),
        [(P1, E1, UNKNOWN, 'revokedDetails entry (promotion promo-2) lists it with status "FAILED" (string)')],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), ok(P2, E1, status=None)),
        [(P1, E1, UNKNOWN, "revokedDetails entry (promotion promo-2) lists it with no status")],
    ),
    (
        {P1: [E1]},
        answer(5, errors=[{"code": 729, "message": "Earn already redeemed", "promotionId": P2, "earnIds": [E1]}]),
        [(P1, E1, UNKNOWN, "names it under promotionId promo-2")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), errors=[{"code": 729, "message": "x", "promotionId": P2, "earnIds": [E1, None]}]),
        [(P1, E1, UNKNOWN, "names it under promotionId promo-2")],
    ),
    (
        {P1: [E1], P2: [E2]},
        answer(5, ok(P1, E1), ok(P2, E2), errors=[{"code": 729, "message": "x", "promotionId": P2, "earnIds": [E1]}]),
        [(P1, E1, UNKNOWN, "names it under promotionId promo-2"), (P2, E2, DONE, "SUCCESS")],
    ),
    (
        {P1: [E1], P2: [E1]},
        answer(5, ok(P1, E1), ok(P2, E1), errors=[{"code": 729, "message": "x", "promotionId": P1, "earnIds": [E1]}]),
        [
            (P1, E1, UNKNOWN, "listed as revoked and in errors[] (code 729: x)"),
            (P2, E1, UNKNOWN, "names it under promotionId promo-1"),
        ],
    ),
    (
        {P1: [E1], P2: [E2]},
        answer(5, ok(P1, E1), ok(P2, E2), ok(P2, E1, status="FAILED")),
        [(P1, E1, UNKNOWN, "(promotion promo-2) lists it with status"), (P2, E2, DONE, "SUCCESS")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), ok(P9, E1)),
        [(P1, E1, DONE, "SUCCESS")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), ok(P9, E2, status="FAILED")),
        [(P1, E1, DONE, "SUCCESS")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1), errors=[{"code": 731, "message": "Invalid promotion", "promotionId": P9}]),
        [(P1, E1, DONE, "SUCCESS")],
    ),
    # statuses compared in ASCII only: "ſ" (long s) upper-cases to "S"
    (
        {P1: [E1]},
        answer(5, ok(P1, E1, status="\u017fuccess")),
        [(P1, E1, UNKNOWN, 'lists it with status "\\u017fuccess" (string)')],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1, status="partial_\u017fucce\u017f\u017f")),
        [(P1, E1, UNKNOWN, "lists it with status")],
    ),
    (
        {P1: [E1]},
        answer(5, ok(P1, E1, status="Partial_Success")),
        [(P1, E1, DONE, "Partial_Success")],
    ),
]
CAPILLARY_DOUBT_IDS = [
    "error_names_earn_under_unrequested_promotion",
    "failed_detail_lists_earn_under_unrequested_promotion",
    "statusless_detail_lists_earn_under_unrequested_promotion",
    "error_under_unrequested_promotion_is_no_refusal_of_ours",
    "error_under_unrequested_promotion_partly_unreadable_earn_ids",
    "error_names_earn_under_another_requested_promotion",
    "error_for_same_earn_under_one_of_two_requested_promotions",
    "failed_detail_lists_earn_under_another_requested_promotion",
    "success_under_unrequested_promotion_is_no_evidence_against",
    "failed_detail_of_unrequested_promotion_for_other_earns_ignored",
    "error_about_unrequested_promotion_naming_no_earn_ignored",
    "status_long_s_success_is_not_success",
    "status_long_s_partial_success_is_not_success",
    "status_mixed_ascii_case_is_success",
]


@pytest.mark.parametrize(("details", "body", "expected"), CAPILLARY_DOUBT_CASES, ids=CAPILLARY_DOUBT_IDS)
def test_capillary_evidence_against_an_earn(details, body, expected) -> None:
    items = [EarnItem(5, p, e) for p, earns in details.items() for e in earns]
    outcomes = interpret_revoke(items, RevokeEarnResponse.model_validate(body)).outcomes
    got = [(o.item.promotion_id, o.item.earn_id, (o.ok, o.kind, o.code)) for o in outcomes]
    assert got == [(p, e, status) for p, e, status, _ in expected]
    for outcome, (_, _, _, fragment) in zip(outcomes, expected, strict=True):
        assert fragment in outcome.message


# -------------------------------------------------------------------------------------------- Xoxoday
def cancel(ids: list[int], recipients: list[Any], error: Any = False) -> list[tuple[int, bool | None, str]]:
    body = {"data": {"cancelBalance": {"error": error, "message": "done", "recipients": recipients}}}
    balance = CancelPointsResponse.model_validate(body).data.cancelBalance  # type: ignore[union-attr]
    return [
        (o.item.unique_id, success(o), o.message)
        for o in interpret_cancel([PointItem(i) for i in ids], balance).outcomes
    ]


def r(uid: Any, success: Any = True, message: str = "m") -> dict[str, Any]:
    return {"unique_id": uid, "success": success, "message": message}


XOXODAY_CASES = [
    # (requested ids, recipients, top-level error, expected [(id, success, message fragment)])
    ([5], [r(5, True), r(5, False)], False, [(5, None, "listed 2 times with different outcomes")]),
    ([5], [r(5, False), r(5, True)], False, [(5, None, "different outcomes")]),
    ([5], [r(5, True, "ok"), r(5, True, "ok again")], False, [(5, True, "ok")]),
    ([5], [r(5, False, "not found"), r(5, False)], False, [(5, False, "not found")]),
    ([1], [r(True)], False, [(1, None, "unique_id true (boolean), not a JSON integer")]),
    ([5], [r("5")], False, [(5, None, 'unique_id "5" (string)')]),
    ([5], [r(5.0)], False, [(5, None, "unique_id 5.0 (number)")]),
    ([5], [r(5, "true")], False, [(5, None, 'success "true" (string), not a JSON boolean')]),
    ([5], [r(5, 1)], False, [(5, None, "success 1, not a JSON boolean")]),
    ([5], [r(5, None, "queued")], False, [(5, None, "no success flag: queued")]),
    ([5], [{"unique_id": 5}], False, [(5, None, "no success flag")]),
    ([5], [r(5, True), {"unique_id": 5, "message": "?"}], False, [(5, None, "no success flag")]),
    ([5], [r(6, True), r(7, False)], False, [(5, None, "not mentioned")]),
    ([5, 6], [r(5, True), r(6, False)], True, [(5, True, "m"), (6, False, "m")]),  # error true: a partial answer
    ([5], ["junk", None, 5, r(5, True)], False, [(5, None, 'recipients[] holds "junk" (string), not an object')]),
    ([5], [r(5, True)], "yes", [(5, None, 'data.cancelBalance.error is "yes" (string), not a JSON boolean')]),
    (
        [5],
        [r(5, True, "ok"), r("5", False, "not found")],
        False,
        [(5, None, 'listed with success true (boolean), but a listing with unique_id "5" (string) says success false')],
    ),
    ([5], [r("5", False), r(5, True)], False, [(5, None, 'unique_id "5" (string) says success false')]),
    ([5], [r(5, True), r(5.0, False)], False, [(5, None, "unique_id 5.0 (number) says success false")]),
    ([5], [r(5, False), r("5", True)], False, [(5, None, "says success true")]),
    ([5], [r(5, True), {"unique_id": "5"}], False, [(5, None, "says no success flag")]),
    ([5], [r(5, True), r(" 5 ", "false")], False, [(5, None, 'says success "false" (string)')]),
    ([1], [r(1, True), r(True, False)], False, [(1, None, "unique_id true (boolean) says success false")]),
    ([5], [r(5, True, "ok"), r("5", True)], False, [(5, True, "ok")]),
    ([5], [r(5, True, "ok"), r("6", False)], False, [(5, True, "ok")]),
]
XOXODAY_IDS = [
    "listed_twice_success_then_failure",
    "listed_twice_failure_then_success",
    "listed_twice_same_success",
    "listed_twice_same_failure",
    "unique_id_true_is_not_id_1",
    "unique_id_string",
    "unique_id_float",
    "success_string_true",
    "success_int_1",
    "success_null_keeps_vendor_message",
    "success_missing",
    "success_then_listing_without_flag",
    "only_ids_we_did_not_request",
    "error_true_beside_a_refusal_is_a_partial_answer",
    "non_object_recipients_void_successes",
    "top_level_error_not_boolean_voids_successes",
    "string_id_refusal_contradicts_integer_success",
    "string_id_refusal_listed_first",
    "float_id_refusal_contradicts_integer_success",
    "string_id_success_contradicts_integer_refusal",
    "string_id_without_flag_contradicts",
    "padded_string_id_with_string_flag_contradicts",
    "boolean_id_refusal_contradicts_id_1",
    "string_id_agreeing_keeps_outcome",
    "string_id_of_an_id_we_did_not_request_ignored",
]


@pytest.mark.parametrize(("ids", "recipients", "error", "expected"), XOXODAY_CASES, ids=XOXODAY_IDS)
def test_xoxoday_findings(ids, recipients, error, expected) -> None:
    got = cancel(ids, recipients, error)
    assert [(u, s) for u, s, _ in got] == [(u, s) for u, s, _ in expected]
    for (_, _, message), (_, _, fragment) in zip(got, expected, strict=True):
        assert fragment in message


def test_xoxoday_top_level_error_is_reported_only_when_boolean() -> None:
    body = {"data": {"cancelBalance": {"error": "yes", "recipients": [r(5)]}}}
    balance = CancelPointsResponse.model_validate(body).data.cancelBalance  # type: ignore[union-attr]
    assert interpret_cancel([PointItem(5)], balance).error is None


def balance_answer(recipients: list[Any], error: Any = False, message: Any = "done", **top: Any) -> dict[str, Any]:
    """A cancel answer; ``top`` adds top-level fields beside ``data`` (``errors``)."""
    return {"data": {"cancelBalance": {"error": error, "message": message, "recipients": recipients}}, **top}


XOXODAY_DOUBT_CASES = [
    # (requested ids, answer, expected [(id, (ok, kind, code), message fragment)])
    (
        [5],
        balance_answer([r(5, True, "Points cancelled successfully")], error=True, message="Cancellation failed"),
        [(5, UNKNOWN, "data.cancelBalance.error is true (Cancellation failed) although no recipient is refused")],
    ),
    (
        [5, 6],
        balance_answer([r(5, True), r(6, False, "not found")], error=True),
        [(5, DONE, "m"), (6, refused("refused"), "not found")],  # error true beside a refusal: a partial answer
    ),
    ([5], balance_answer([r(5, True)], error="false"), [(5, UNKNOWN, 'error is "false" (string), not a JSON boolean')]),
    ([5], balance_answer([r(5, True)], error=0), [(5, UNKNOWN, "data.cancelBalance.error is 0, not a JSON boolean")]),
    ([5], balance_answer([r(5, True, "ok")], error=None), [(5, DONE, "ok")]),
    ([5], {"data": {"cancelBalance": {"recipients": [r(5, True, "ok")]}}}, [(5, DONE, "ok")]),
    (
        [5],
        balance_answer([r(5, True)], errors=[{"message": "cancelBalance failed: transaction locked"}]),
        [(5, UNKNOWN, 'the answer carries errors [{"message": "cancelBalance failed: transaction locked"}]')],
    ),
    (
        [5, 6],
        balance_answer([r(5, True), r(6, False, "not found")], errors=[{"message": "partial"}]),
        [(5, UNKNOWN, "the answer carries errors"), (6, refused("refused"), "not found")],
    ),
    ([5], balance_answer([r(5, True)], errors="boom"), [(5, UNKNOWN, 'carries errors "boom" (string) beside data')]),
    ([5], balance_answer([r(5, True, "ok")], errors=[]), [(5, DONE, "ok")]),
    ([5], balance_answer([r(5, True, "ok")], errors=None), [(5, DONE, "ok")]),
    (
        [5],
        balance_answer([r(5, True), r(None, False, "Transaction 5 not found")], error=False),
        [(5, UNKNOWN, "recipients[] holds an entry with unique_id null or missing, which names no id")],
    ),
    (
        [5],
        balance_answer([r(5, True), {"success": False}]),
        [(5, UNKNOWN, "unique_id null or missing")],
    ),
    (
        [5],
        balance_answer([r(5, True), r("5.0", False)]),
        [(5, UNKNOWN, 'recipients[] holds an entry with unique_id "5.0" (string), which names no id')],
    ),
    ([5], balance_answer([r(5, True), r(5.5, False)]), [(5, UNKNOWN, "unique_id 5.5 (number), which names no id")]),
    ([5], balance_answer([r(5, True), r([5], False)]), [(5, UNKNOWN, "unique_id [5] (array)")]),
    (
        [5],
        balance_answer([r(5, True), "unique_id 5: cancellation failed", None]),
        [(5, UNKNOWN, 'recipients[] holds "unique_id 5: cancellation failed" (string), not an object naming an id')],
    ),
    ([5], balance_answer([None, r(5, True)]), [(5, UNKNOWN, "recipients[] holds null, not an object")]),
    (
        [5, 6],
        balance_answer([r(5, False, "not found"), r(6, True), r("x", False)]),
        [(5, refused("refused"), "not found"), (6, UNKNOWN, 'unique_id "x" (string)')],
    ),
    (
        [5],
        balance_answer([r("", False)]),
        [(5, UNKNOWN, 'not mentioned in the vendor\'s answer, but recipients[] holds an entry with unique_id ""')],
    ),
    ([5], balance_answer([r(5, True, "ok"), r(100, False)]), [(5, DONE, "ok")]),
    ([5], balance_answer([r(5, True, "ok"), r("1" * 5000, False)]), [(5, DONE, "ok")]),
    ([5], balance_answer([r(5, True), r("\u00b2", False)]), [(5, UNKNOWN, 'unique_id "\\u00b2" (string)')]),
    ([5], balance_answer([r(5, True, "ok"), r("\u00b2", True)]), [(5, DONE, "ok")]),
]
XOXODAY_DOUBT_IDS = [
    "overall_error_true_voids_success",
    "overall_error_true_beside_a_refusal_both_stand",
    "overall_error_string",
    "overall_error_number",
    "overall_error_null_success_stands",
    "overall_error_missing_success_stands",
    "top_level_errors_void_success",
    "top_level_errors_refusal_stands",
    "top_level_errors_not_a_list",
    "top_level_errors_empty_success_stands",
    "top_level_errors_null_success_stands",
    "recipient_unique_id_null",
    "recipient_unique_id_missing",
    "recipient_unique_id_decimal_string",
    "recipient_unique_id_fraction",
    "recipient_unique_id_array",
    "recipient_entry_string",
    "recipient_entry_null",
    "unattributable_recipient_refusal_stands",
    "unattributable_recipient_named_for_unmentioned_id",
    "integer_id_we_did_not_request_ignored",
    "long_digit_string_id_is_another_transaction",
    "superscript_digit_id_names_no_id",
    "unattributable_success_entry_contradicts_nothing",
]


@pytest.mark.parametrize(("ids", "body", "expected"), XOXODAY_DOUBT_CASES, ids=XOXODAY_DOUBT_IDS)
def test_xoxoday_answer_wide_doubt(ids, body, expected) -> None:
    balance = CancelPointsResponse.model_validate(body).data.cancelBalance  # type: ignore[union-attr]
    outcomes = interpret_cancel([PointItem(i) for i in ids], balance).outcomes
    assert [(o.item.unique_id, (o.ok, o.kind, o.code)) for o in outcomes] == [(i, st) for i, st, _ in expected]
    for outcome, (_, _, fragment) in zip(outcomes, expected, strict=True):
        assert fragment in outcome.message


# ------------------------------------------------------------------------------------ through the hooks
def test_capillary_hook_does_not_take_another_customers_answer(requests_mock, capillary_conn) -> None:
    requests_mock.post(f"{CAPILLARY_URL}/api_gateway/v1/promotions/revokeEarn", json=answer(7, ok(P1, E1)))
    result = CapillaryHook(clock=FakeClock()).revoke_earn(5, {P1: [E1]})
    assert requests_mock.last_request.json()["customerId"] == 5
    assert [(verdict(o), o.message) for o in result.outcomes] == [("unknown", "answer names customer 7, not 5")]


def test_xoxoday_hook_does_not_read_true_as_id_1(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(
        f"{XOXODAY_URL}/chef/v1/oauth/api",
        json={"data": {"cancelBalance": {"error": False, "recipients": [r(True), r(2, "true")]}}},
    )
    result = XoxodayHook(token_store=MemoryTokenStore(), clock=FakeClock()).cancel_points([1, 2])
    assert requests_mock.last_request.json()["variables"]["recipients_data"]["recipients"] == [
        {"unique_id": 1},
        {"unique_id": 2},
    ]
    assert [success(o) for o in result.outcomes] == [None, None]
    assert result.succeeded == []


def test_xoxoday_hook_reads_top_level_errors(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(
        f"{XOXODAY_URL}/chef/v1/oauth/api",
        json=balance_answer([r(5, True)], errors=[{"message": "cancelBalance failed: transaction locked"}]),
    )
    result = XoxodayHook(token_store=MemoryTokenStore(), clock=FakeClock()).cancel_points([5])
    assert [(o.ok, o.kind, o.code) for o in result.outcomes] == [UNKNOWN]
    assert result.succeeded == []
