"""Claims against a real SQLite file, a real DuckDB file and a real PostgreSQL server, on a fake clock.

Each statement is run as the ledger runs it: on one connection, committed by the caller.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_loyalty.coordination import claims
from airflow_provider_loyalty.coordination.claims import Owner

LEASE = 60.0
T0 = 1_800_000_000.0


def owner(name: str, pid: int = 10) -> Owner:
    run = {"dag_id": "d", "run_id": name, "task_id": "t", "map_index": 2, "try_number": 1}
    return Owner(run, host="h", pid=pid, token=f"tok-{name}")


def committed(db: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    conn = db.connect()
    try:
        result = fn(conn, db.table, db.placeholder, *args, **kwargs)
        conn.commit()
        return result
    finally:
        conn.close()


def rows(db: Any) -> dict[str, tuple[Any, ...]]:
    conn = db.connect()
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT item_key, token, epoch, lease_expiry, taken_from, owner FROM {db.table}")
        return {r[0]: tuple(r[1:]) for r in cursor.fetchall()}
    finally:
        conn.close()


def test_a_new_item_is_claimed_at_epoch_1_and_a_live_claim_is_reported_not_taken(db):
    a, b = owner("a"), owner("b")
    got = committed(db, claims.claim, "v", ["k1", "k2"], a, now=T0, lease=LEASE)
    assert got.mine == {"k1": 1, "k2": 1} and not got.elsewhere and not got.expired
    other = committed(db, claims.claim, "v", ["k1", "k3"], b, now=T0 + LEASE - 1, lease=LEASE)
    assert other.mine == {"k3": 1}
    assert list(other.elsewhere) == ["k1"]
    holder = other.elsewhere["k1"]
    assert holder.label == a.label == "run a, task t[2] try 1 on h (pid 10)"
    assert holder.lease_expiry == T0 + LEASE and (holder.host, holder.pid) == ("h", 10)
    assert not holder.same_task_earlier_try(b.run)
    assert holder.same_task_earlier_try({**a.run, "try_number": 2})
    assert rows(db)["k1"][:2] == ("tok-a", 1)


def test_an_expired_lease_is_taken_over_with_a_higher_epoch_and_reported_as_in_doubt(db):
    a, b = owner("a"), owner("b")
    committed(db, claims.claim, "v", ["k1", "k2"], a, now=T0, lease=LEASE)
    committed(db, claims.release, "v", ["k2"], a.token)  # settled: released
    got = committed(db, claims.claim, "v", ["k1", "k2"], b, now=T0 + LEASE + 1, lease=LEASE)
    assert got.mine == {"k1": 2, "k2": 2}
    assert got.expired == {"k1": a.label}  # never settled by a: in doubt
    assert got.reclaimed == {"k2"}  # released by a: not in doubt
    assert rows(db)["k1"][:3] == ("tok-b", 2, T0 + LEASE + 1 + LEASE)


def test_the_fence_renews_and_returns_only_what_the_owner_still_holds(db):
    a, b = owner("a"), owner("b")
    committed(db, claims.claim, "v", ["k1", "k2", "k3"], a, now=T0, lease=LEASE)
    assert committed(db, claims.fence, "v", ["k1", "k2"], a.token, now=T0 + 50, lease=LEASE) == {"k1", "k2"}
    # k1, k2 renewed to T0+110; k3 ran out at T0+60 and b takes it over
    got = committed(db, claims.claim, "v", ["k1", "k2", "k3"], b, now=T0 + 70, lease=LEASE)
    assert got.mine == {"k3": 2} and set(got.elsewhere) == {"k1", "k2"}
    # a, paused past its lease, wakes up: the fence refuses k3 (never sent) and keeps the rest
    assert committed(db, claims.fence, "v", ["k1", "k2", "k3"], a.token, now=T0 + 80, lease=LEASE) == {"k1", "k2"}
    assert committed(db, claims.held, "v", ["k1", "k3"], a.token) == {"k1"}
    assert committed(db, claims.held, "v", ["k3"], b.token) == {"k3"}


def test_release_keeps_the_epoch_growing_and_only_the_owner_releases(db):
    a, b = owner("a"), owner("b")
    committed(db, claims.claim, "v", ["k"], a, now=T0, lease=LEASE)
    assert committed(db, claims.release, "v", ["k"], b.token) == 0
    assert committed(db, claims.release, "v", ["k"], a.token) == 1
    assert committed(db, claims.release, "v", ["k"], a.token) == 0  # already released
    assert committed(db, claims.fence, "v", ["k"], a.token, now=T0 + 1, lease=LEASE) == set()  # settled: not sent
    assert committed(db, claims.claim, "v", ["k"], b, now=T0 + 1, lease=LEASE).mine == {"k": 2}
    # a's token no longer fences anything: its fence after the release and take-over is empty
    assert committed(db, claims.fence, "v", ["k"], a.token, now=T0 + 2, lease=LEASE) == set()


def test_the_heartbeat_renews_every_live_claim_of_the_owner_and_nothing_released(db):
    a = owner("a")
    committed(db, claims.claim, "v", ["k1", "k2", "k3"], a, now=T0, lease=LEASE)
    committed(db, claims.release, "v", ["k3"], a.token)
    assert committed(db, claims.renew_all, a.token, now=T0 + 40, lease=LEASE) == 2
    held = rows(db)
    assert held["k1"][2] == held["k2"][2] == T0 + 100 and held["k3"][2] is None


def test_a_dead_owners_claim_is_taken_over_only_while_that_owner_still_holds_it(db):
    a, b, c = owner("a"), owner("b"), owner("c")
    committed(db, claims.claim, "v", ["k1", "k2"], a, now=T0, lease=LEASE)
    seen = committed(db, claims.tokens_of, "v", ["k1", "k2"])
    assert seen == {"k1": a.token, "k2": a.token}
    committed(db, claims.release, "v", ["k2"], a.token)  # settled meanwhile: not taken over as dead
    assert committed(db, claims.take_over, "v", seen, b, now=T0 + 1, lease=LEASE) == {"k1": 2}
    assert rows(db)["k1"][3] == a.label  # taken_from
    # c saw a's token too, but b holds k1 now: nothing for c
    assert committed(db, claims.take_over, "v", {"k1": a.token}, c, now=T0 + 2, lease=LEASE) == {}


def test_vendors_do_not_share_claims(db):
    a, b = owner("a"), owner("b")
    committed(db, claims.claim, "v1", ["k"], a, now=T0, lease=LEASE)
    assert committed(db, claims.claim, "v2", ["k"], b, now=T0, lease=LEASE).mine == {"k": 1}


def test_many_keys_go_in_chunks(db):
    a, b = owner("a"), owner("b")
    keys = [f"k{i}" for i in range(claims.CLAIM_CHUNK * 2 + 7)]
    assert len(committed(db, claims.claim, "v", keys, a, now=T0, lease=LEASE).mine) == len(keys)
    assert committed(db, claims.fence, "v", keys, a.token, now=T0, lease=LEASE) == set(keys)
    got = committed(db, claims.claim, "v", keys[::2], b, now=T0 + 1, lease=LEASE)
    assert not got.mine and len(got.elsewhere) == len(keys[::2])


# --------------------------------------------------------------------------- model-based property
OWNERS = ["a", "b", "c"]
KEYS = ["k1", "k2", "k3"]
operation = st.one_of(
    st.tuples(st.just("claim"), st.sampled_from(OWNERS), st.sets(st.sampled_from(KEYS), min_size=1)),
    st.tuples(st.just("fence"), st.sampled_from(OWNERS), st.sets(st.sampled_from(KEYS), min_size=1)),
    st.tuples(st.just("release"), st.sampled_from(OWNERS), st.sets(st.sampled_from(KEYS), min_size=1)),
    st.tuples(st.just("renew"), st.sampled_from(OWNERS), st.just(frozenset())),
    st.tuples(st.just("wait"), st.sampled_from([1.0, 30.0, 61.0]), st.just(frozenset())),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(operation, max_size=14))
def test_claims_behave_like_their_model_and_never_let_two_owners_send_one_item(db, steps):
    """Any interleaving of claims, fences, releases, heartbeats and pauses agrees with a tiny model.

    The model: per key, (owner, lease expiry or None once released, epoch). The safety property
    checked on top: whenever the fence lets an owner send a key, no other owner was let send that
    key under the same epoch, and epochs only grow.
    """
    conn = db.connect()
    conn.cursor().execute(f"DELETE FROM {db.table}")
    conn.commit()
    conn.close()
    now = T0
    model: dict[str, tuple[str, float | None, int]] = {}
    sent_under: dict[tuple[str, int], str] = {}
    last_epoch: dict[str, int] = {}
    for op, who, keys in steps:
        if op == "wait":
            now += who  # type: ignore[operator]
            continue
        me = owner(str(who))
        keys = sorted(keys)
        if op == "claim":
            got = committed(db, claims.claim, "v", keys, me, now=now, lease=LEASE)
            for k in keys:
                held = model.get(k)
                if held is None:
                    model[k] = (me.token, now + LEASE, 1)
                    assert got.mine.get(k) == 1
                elif held[1] is None or held[1] < now:
                    model[k] = (me.token, now + LEASE, held[2] + 1)
                    assert got.mine.get(k) == held[2] + 1
                    assert (k in got.expired) == (held[1] is not None)
                elif held[0] == me.token:  # its own live claim (a retried claim statement): still its own
                    assert got.mine.get(k) == held[2] and k not in got.elsewhere
                else:
                    assert k in got.elsewhere and k not in got.mine
        elif op == "fence":
            got_keys = committed(db, claims.fence, "v", keys, me.token, now=now, lease=LEASE)
            expected = {k for k in keys if k in model and model[k][0] == me.token and model[k][1] is not None}
            assert got_keys == expected
            for k in expected:
                token, _, epoch = model[k]
                model[k] = (token, now + LEASE, epoch)
                assert sent_under.setdefault((k, epoch), me.token) == me.token
                assert epoch >= last_epoch.get(k, 0)
                last_epoch[k] = epoch
        elif op == "release":
            n = committed(db, claims.release, "v", keys, me.token)
            mine = [k for k in keys if k in model and model[k][0] == me.token and model[k][1] is not None]
            assert n == len(mine)
            for k in mine:
                model[k] = (model[k][0], None, model[k][2])
        else:
            n = committed(db, claims.renew_all, me.token, now=now, lease=LEASE)
            mine = [k for k in model if model[k][0] == me.token and model[k][1] is not None]
            assert n == len(mine)
            for k in mine:
                model[k] = (model[k][0], now + LEASE, model[k][2])
    found = rows(db)
    assert {k: (v[0], v[2], v[1]) for k, v in found.items()} == {k: (t, e, ep) for k, (t, e, ep) in model.items()}
