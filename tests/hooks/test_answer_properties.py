"""Property tests of both hooks' answer interpretation.

Two properties per vendor:

* **exact on well-formed answers**: an answer built in the documented shape from a random truth
  (revoked / refused / not mentioned per item, entries shuffled, ids of other requests mixed in)
  is read back as exactly that truth;
* **sound on anything**: for arbitrary, corrupted answers (wrong customer, mistyped ids and flags,
  duplicated and contradicting entries, missing fields), an item is reported succeeded only if a
  test oracle written from the raw JSON finds that the answer says so for exactly that item, with
  nothing contradicting it.

The oracles read the JSON the vendor sent, not our models, so a lax model cannot agree with itself.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_loyalty.hooks.capillary import interpret_revoke
from airflow_provider_loyalty.hooks.xoxoday import interpret_cancel
from airflow_provider_loyalty.items import EarnItem, PointItem
from airflow_provider_loyalty.models import (
    CancelPointsResponse,
    RevokeEarnResponse,
)
from tests.hooks.conftest import HOOKS_PROFILE, success, verdict

MISSING: Any = object()  # a field left out of the JSON object


def obj(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not MISSING}


# ============================================================================================ Capillary
PROMOS = ["p1", "p2", "p3"]
EARNS = ["e1", "e2", "e3", "7"]  # "7": an earn id a mistyped answer can name as the number 7
CUSTOMER = 5

requests_ = st.dictionaries(
    st.sampled_from(PROMOS), st.lists(st.sampled_from(EARNS), min_size=1, max_size=4, unique=True), min_size=1
)


def revoke_items(details: dict[str, list[str]]) -> list[EarnItem]:
    return [EarnItem(CUSTOMER, p, e) for p, earns in details.items() for e in earns]


def run_revoke(details: dict[str, list[str]], body: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    result = interpret_revoke(revoke_items(details), RevokeEarnResponse.model_validate(body))
    return [(o.item.promotion_id, o.item.earn_id, verdict(o), o.code) for o in result.outcomes]


@st.composite
def well_formed_revoke(draw: st.DrawFn) -> tuple[dict[str, list[str]], dict[str, Any], dict[tuple[str, str], str]]:
    details = draw(requests_)
    truth = {
        (p, e): draw(st.sampled_from(["revoked", "failed", "absent"])) for p, earns in details.items() for e in earns
    }
    revoked: dict[str, list[str]] = {}
    errors: list[Any] = []
    for (p, e), fate in truth.items():
        if fate == "revoked":
            revoked.setdefault(p, []).append(e)
        elif fate == "failed":
            errors.append({"code": 729, "message": "Earn already redeemed", "promotionId": p, "earnIds": [e]})
    entries = [{"promotionId": p, "revokedEarnIds": e, "status": "SUCCESS"} for p, e in revoked.items()]
    # answers about promotions we did not ask for (another request's) must change nothing, as long as
    # they revoke our earns or refuse only others (earn ids are the vendor's own: refusing one of ours
    # under another promotion is evidence against it)
    entries.append({"promotionId": "p-other", "revokedEarnIds": EARNS, "status": "SUCCESS"})
    entries.append({"promotionId": "p-other", "revokedEarnIds": ["e-other"], "status": "FAILED"})
    errors.append({"code": 731, "message": "Invalid earn id", "promotionId": "p-other", "earnIds": ["e-other"]})
    errors.append({"code": 731, "message": "Invalid promotion", "promotionId": "p-other"})
    body = {
        "data": {"customerId": CUSTOMER, "revokedDetails": draw(st.permutations(entries))},
        "errors": draw(st.permutations(errors)),
    }
    return details, body, truth


@settings(HOOKS_PROFILE)
@given(well_formed_revoke())
def test_capillary_well_formed_answers_are_read_exactly(case) -> None:
    details, body, truth = case

    def expected_of(p: str, e: str) -> str:
        if truth[p, e] == "absent":
            return "unknown"
        if truth[p, e] == "revoked" and any(f == "failed" and q != p and x == e for (q, x), f in truth.items()):
            return "unknown"  # the same earn id refused under another promotion of the request
        return truth[p, e]

    expected = [(p, e, expected_of(p, e)) for p, es in details.items() for e in es]
    assert [(p, e, s) for p, e, s, _ in run_revoke(details, body)] == expected


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 7),
    st.sampled_from([5.0, 5.5, "5", "", "x"]),
)
ids_or_junk = st.one_of(st.sampled_from(PROMOS + EARNS + ["p-other", "e-other", "SUCCESS"]), scalars)
statuses = st.one_of(
    st.sampled_from(
        [
            "SUCCESS",
            "success",
            "PARTIAL_SUCCESS",
            "FAILED",
            "PARTIAL",
            "",
            "\u017fuccess",
            "partial_\u017fuccess",
            MISSING,
        ]
    ),
    st.none(),
    scalars,
)
id_lists = st.one_of(st.lists(ids_or_junk, max_size=4), st.just(MISSING), scalars)
details_entries = st.builds(
    obj,
    promotionId=st.one_of(st.sampled_from(PROMOS + ["p-other", MISSING]), scalars),
    revokedEarnIds=id_lists,
    status=statuses,
)
error_entries = st.builds(
    obj,
    code=st.one_of(st.sampled_from([729, 730, 731, "729", MISSING]), st.none()),
    message=st.sampled_from(["redeemed", "", MISSING]),
    promotionId=st.one_of(st.sampled_from(PROMOS + ["p-other", " ", MISSING]), scalars),
    earnIds=id_lists,
)
revoke_answers = st.builds(
    lambda customer, entries, errors, code: {
        "data": obj(customerId=customer, revokedDetails=entries, code=code),
        "errors": errors,
    },
    customer=st.one_of(st.just(CUSTOMER), st.just(MISSING), st.integers(1, 9), scalars),
    entries=st.lists(details_entries, max_size=5),
    errors=st.lists(st.one_of(error_entries, error_entries, scalars), max_size=3),
    code=st.one_of(st.just(MISSING), st.just(731)),
)


def confirmed_revoked(body: dict[str, Any], promo: str, earn: str) -> bool:
    """The oracle: does the raw answer say (promo, earn) of customer 5 was revoked, with no contradiction?"""
    data = body["data"]
    customer = data.get("customerId", MISSING)
    if type(customer) is not int or customer != CUSTOMER:
        return False
    if data.get("code") is not None or data.get("message") is not None:
        return False  # the documented failure shape beside the revoked details
    entries = [d for d in data.get("revokedDetails", []) if isinstance(d, dict)]

    def lists_earn(entry: dict[str, Any]) -> bool:
        earns = entry.get("revokedEarnIds")
        return isinstance(earns, list) and earn in earns

    def is_success(entry: dict[str, Any]) -> bool:
        status = entry.get("status")  # any ASCII case: "ſuccess".upper() is "SUCCESS"
        return isinstance(status, str) and status.isascii() and status.upper() in ("SUCCESS", "PARTIAL_SUCCESS")

    claims = [d for d in entries if d.get("promotionId") == promo and lists_earn(d) and is_success(d)]
    if not claims:
        return False
    for d in entries:
        promotion = d.get("promotionId")
        if lists_earn(d) and not is_success(d):
            return False  # listed with another status, under any promotion (earn ids are the vendor's own)
        if promotion == promo and "revokedEarnIds" in d and not isinstance(d["revokedEarnIds"], list | None):
            return False  # an entry for our promotion that cannot be read
    for error in body["errors"]:
        if not isinstance(error, dict):
            return False  # an entry naming nothing we can read: the whole request is in doubt
        promotion = error.get("promotionId")
        earns = error.get("earnIds")
        if isinstance(promotion, str) and promotion.strip() and promotion != promo:
            if isinstance(earns, list) and earn in earns:
                return False  # names this earn under another promotion
            continue  # about another promotion's earns
        readable = isinstance(earns, list) and all(isinstance(e, str) for e in earns)
        if readable and earns and earn not in earns:
            continue  # names other earns only
        return False  # names this earn, or its whole promotion/request, or cannot be read
    return True


@st.composite
def corrupted_revoke(draw: st.DrawFn) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """A well-formed answer with a few corruptions applied (most then claim something about our earns)."""
    details, body, _ = draw(well_formed_revoke())
    data, errors = body["data"], body["errors"]
    entries: list[Any] = data["revokedDetails"]
    requested = [(p, e) for p, es in details.items() for e in es]
    for _ in range(draw(st.integers(1, 3))):
        promo, earn = draw(st.sampled_from(requested))
        kind = draw(
            st.sampled_from(
                [
                    "customer",
                    "status",
                    "promotion",
                    "earn",
                    "duplicate",
                    "error_for",
                    "claim",
                    "junk_entry",
                    "junk_error",
                    "error_mistyped",
                    "error_not_object",
                    "top_level_code",
                    "elsewhere",
                ]
            )
        )
        if kind == "customer":
            value = draw(st.sampled_from([MISSING, None, 7, "5", True, 5.0, 5.5, [5]]))
            data.pop("customerId", None) if value is MISSING else data.__setitem__("customerId", value)
        elif kind in ("status", "promotion", "earn") and entries:
            entry = dict(draw(st.sampled_from(entries)))
            entries.remove(next(x for x in entries if x == entry))
            if kind == "status":
                value = draw(statuses)
                entry.pop("status", None) if value is MISSING else entry.__setitem__("status", value)
            elif kind == "promotion":
                value = draw(st.one_of(st.just(MISSING), scalars, st.sampled_from(PROMOS)))
                entry.pop("promotionId", None) if value is MISSING else entry.__setitem__("promotionId", value)
            else:
                entry["revokedEarnIds"] = draw(id_lists)
                if entry["revokedEarnIds"] is MISSING:
                    del entry["revokedEarnIds"]
            entries.append(entry)
        elif kind == "duplicate" and entries:
            entry = dict(draw(st.sampled_from(entries)))
            entry["status"] = draw(st.sampled_from(["SUCCESS", "FAILED", None]))
            entries.append(entry)
        elif kind == "error_for":  # an errors[] entry naming a requested earn, its promotion or the request
            errors.append(
                obj(
                    code=729,
                    message="redeemed",
                    promotionId=draw(st.sampled_from([promo, MISSING, None])),
                    earnIds=draw(st.sampled_from([[earn], [], MISSING])),
                )
            )
        elif kind == "claim":  # a (maybe unattributed) success claim for a requested earn
            entries.append(
                obj(promotionId=draw(st.sampled_from([promo, MISSING, None])), revokedEarnIds=[earn], status="SUCCESS")
            )
        elif kind == "junk_entry":
            entries.append(draw(details_entries))
        elif kind == "error_mistyped":  # an errors[] entry we cannot attribute precisely
            mistyped = [int(earn)] if earn.isdigit() else [[earn]]
            errors.append(
                obj(
                    code=729,
                    message="redeemed",
                    promotionId=draw(st.sampled_from([promo, "", " ", MISSING, None, 9])),
                    earnIds=draw(st.sampled_from([mistyped, [earn, None], [earn], [5], [[earn]], MISSING])),
                )
            )
        elif kind == "error_not_object":
            errors.append(draw(st.sampled_from([f"{earn}: redeemed (729)", 729, None, [earn], True])))
        elif kind == "elsewhere":  # evidence against the earn filed under another promotion
            other = draw(st.sampled_from(["p-other", *(p for p in details if p != promo)]))
            if draw(st.booleans()):
                errors.append(obj(code=729, message="redeemed", promotionId=other, earnIds=[earn]))
            else:
                status = draw(st.sampled_from(["FAILED", None, MISSING, "\u017fuccess", "SUCCESS"]))
                entries.append(obj(promotionId=other, revokedEarnIds=[earn], status=status))
        elif kind == "top_level_code":
            data.update(
                draw(st.sampled_from([{"code": 500, "message": "Revoke failed"}, {"code": 500}, {"message": "x"}]))
            )
        else:
            errors.append(draw(error_entries))
    return details, body


@settings(HOOKS_PROFILE)
@given(st.one_of(corrupted_revoke(), st.tuples(requests_, revoke_answers)))
def test_capillary_revoked_only_when_the_answer_says_so_for_exactly_that_earn(case) -> None:
    details, body = case
    outcomes = run_revoke(details, body)
    assert [(p, e) for p, e, _, _ in outcomes] == [(p, e) for p, es in details.items() for e in es]
    customer = body["data"].get("customerId", MISSING)
    for promo, earn, status, _ in outcomes:
        assert status in ("revoked", "failed", "unknown")
        if status == "revoked":
            assert confirmed_revoked(body, promo, earn), (promo, earn)
        if customer is not MISSING and customer is not None and not (type(customer) is int and customer == CUSTOMER):
            assert status == "unknown"


@settings(HOOKS_PROFILE)
@given(well_formed_revoke(), st.sampled_from([7, "5", True, 5.0]))
def test_capillary_any_other_customer_voids_every_outcome(case, customer) -> None:
    details, body, _ = case
    body["data"]["customerId"] = customer
    assert {s for _, _, s, _ in run_revoke(details, body)} == {"unknown"}


# ============================================================================================== Xoxoday
IDS = [1, 2, 3, 4, 5]
id_requests = st.lists(st.sampled_from(IDS), min_size=1, max_size=5, unique=True)


def run_cancel(ids: list[int], body: dict[str, Any]) -> list[tuple[int, bool | None]]:
    balance = CancelPointsResponse.model_validate(body).data.cancelBalance  # type: ignore[union-attr]
    return [(o.item.unique_id, success(o)) for o in interpret_cancel([PointItem(i) for i in ids], balance).outcomes]


@st.composite
def well_formed_cancel(draw: st.DrawFn) -> tuple[list[int], dict[str, Any], dict[int, bool | None]]:
    ids = draw(id_requests)
    truth: dict[int, bool | None] = {uid: draw(st.sampled_from([True, False, None])) for uid in ids}
    recipients = []
    for uid, fate in truth.items():
        if fate is not None:
            copies = draw(st.integers(1, 2))  # the same outcome twice is fine
            recipients += [{"unique_id": uid, "success": fate, "message": "m"}] * copies
    foreign = draw(st.lists(st.integers(100, 105), max_size=2))  # ids of no request of ours
    recipients += [{"unique_id": uid, "success": True, "message": "m"} for uid in foreign]
    # a refusal sets the overall error flag; it may be set anyway (an id not mentioned)
    error = False in truth.values() or draw(st.booleans())
    body: dict[str, Any] = {
        "data": {"cancelBalance": {"error": error, "recipients": draw(st.permutations(recipients))}}
    }
    errors = draw(st.sampled_from([MISSING, None, []]))  # no top-level errors
    if errors is not MISSING:
        body["errors"] = errors
    return ids, body, truth


@settings(HOOKS_PROFILE)
@given(well_formed_cancel())
def test_xoxoday_well_formed_answers_are_read_exactly(case) -> None:
    ids, body, truth = case
    error = body["data"]["cancelBalance"]["error"]
    # error true beside a refusal is a partial answer; with none, it says the operation failed: no
    # success stands beside it
    failed = error and False not in truth.values()
    assert run_cancel(ids, body) == [(uid, None if failed and truth[uid] else truth[uid]) for uid in ids]


recipients_ = st.builds(
    obj,
    unique_id=st.one_of(st.sampled_from(IDS + [MISSING]), scalars, st.sampled_from(["1", 1.0, 2.0])),
    success=st.one_of(st.sampled_from([True, False, MISSING, "true", "false", 1, 0]), st.none()),
    message=st.sampled_from(["ok", "", MISSING]),
)
top_level_errors = st.sampled_from([MISSING, None, [], [{"message": "failed"}], ["x"], "boom", {}])
cancel_answers = st.builds(
    lambda error, recipients, errors: obj(
        data={"cancelBalance": obj(error=error, recipients=recipients)},
        errors=errors,
    ),
    error=st.one_of(st.booleans(), st.none(), st.just(MISSING), st.sampled_from(["true", "false", 0, 1])),
    recipients=st.lists(st.one_of(recipients_, scalars), max_size=8),
    errors=top_level_errors,
)


def names_an_id(entry: Any) -> bool:
    """Whether a recipient entry can be attributed to an id: an object naming a JSON integer, or one mistyped."""
    if not isinstance(entry, dict):
        return False
    named = entry.get("unique_id")
    return (
        type(named) in (int, bool)
        or (type(named) is float and named.is_integer())
        or (isinstance(named, str) and re.fullmatch("[0-9]+", named.strip()) is not None)
    )


def oracle_cancel(body: dict[str, Any], uid: int) -> bool | None:
    """The oracle: the outcome the raw answer gives ``uid`` if every listing of it agrees, else ``None``.

    Listings naming ``uid`` mistyped (``"5"``, ``" 5 "``, ``5.0``, ``true`` for 1) are no outcome, but
    they must agree too.
    """
    balance = body["data"]["cancelBalance"]
    recipients = [r for r in balance["recipients"] if isinstance(r, dict)]
    flags = [r.get("success", MISSING) for r in recipients if type(r.get("unique_id")) is int and r["unique_id"] == uid]
    if not (flags and all(type(f) is bool for f in flags) and len(set(flags)) == 1):
        return None
    error = balance.get("error", None)
    refused_any = any(r.get("success", MISSING) is False for r in recipients)
    if flags[0] and (
        body.get("errors") not in (MISSING, None, [])  # top-level errors beside data
        or (error is not None and type(error) is not bool)  # 0, "false": not a boolean
        or (error is True and not refused_any)  # "failed", yet nothing refused
        # an entry that could be about any id, saying anything but success
        or not all(names_an_id(r) or (isinstance(r, dict) and r.get("success") is True) for r in balance["recipients"])
    ):
        return None  # the answer as a whole contradicts or clouds the success
    for r in recipients:
        named = r.get("unique_id")
        resembles = (
            (type(named) is bool and int(named) == uid)
            or (type(named) is float and named == uid)
            or (isinstance(named, str) and named.strip() == str(uid))
        )
        if resembles and r.get("success", MISSING) is not flags[0]:
            return None
    return flags[0]


@st.composite
def corrupted_cancel(draw: st.DrawFn) -> tuple[list[int], dict[str, Any]]:
    """A well-formed answer with a few listings added or altered (mistyped, contradicting, flagless)."""
    ids, body, _ = draw(well_formed_cancel())
    recipients: list[Any] = body["data"]["cancelBalance"]["recipients"]
    for _ in range(draw(st.integers(1, 3))):
        uid = draw(st.sampled_from(ids))
        kind = draw(
            st.sampled_from(
                ["contradict", "mistype_id", "mistype_flag", "alter", "junk", "unattributable", "error", "errors"]
            )
        )
        if kind == "contradict":
            recipients.append({"unique_id": uid, "success": draw(st.booleans())})
        elif kind == "mistype_id":
            value = draw(st.sampled_from([str(uid), f" {uid} ", float(uid), uid == 1, [uid]]))
            flag = draw(st.sampled_from([True, False, None, MISSING, "true"]))
            recipients.append(obj(unique_id=value, success=flag))
        elif kind == "mistype_flag":
            recipients.append(obj(unique_id=uid, success=draw(st.sampled_from(["true", 1, None, MISSING, "false"]))))
        elif kind == "unattributable":  # an entry naming no id at all
            recipients.append(
                draw(st.sampled_from([None, "junk", 7, {"unique_id": None, "success": False}, {"unique_id": "5.0"}]))
            )
        elif kind == "error":
            body["data"]["cancelBalance"]["error"] = draw(st.sampled_from([True, "true", "false", 1, 0, None]))
        elif kind == "errors":
            body["errors"] = draw(top_level_errors)
            if body["errors"] is MISSING:
                del body["errors"]
        elif kind == "alter" and recipients:
            index = draw(st.integers(0, len(recipients) - 1))
            recipients[index] = draw(recipients_)
        else:
            recipients.append(draw(st.one_of(recipients_, scalars)))
    return ids, body


@settings(HOOKS_PROFILE)
@given(st.one_of(corrupted_cancel(), st.tuples(id_requests, cancel_answers)))
def test_xoxoday_outcome_only_when_every_listing_of_exactly_that_id_agrees(case) -> None:
    ids, body = case
    outcomes = run_cancel(ids, body)
    assert [uid for uid, _ in outcomes] == ids
    for uid, flag in outcomes:
        assert flag is None or type(flag) is bool
        if flag is not None:
            assert flag is oracle_cancel(body, uid), uid
