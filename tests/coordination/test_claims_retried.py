"""A claim statement run again by its own owner: the ledger retries an operation whose commit may
have gone through although its answer was lost (a connection dropped at the commit). The owner's
own claims must come back as its own, not as "claimed by another attempt" (which would leave
them unsent for the whole run, and held until the lease ran out). SQLite, DuckDB, PostgreSQL."""

from __future__ import annotations

from airflow_provider_loyalty.coordination import claims
from tests.coordination.test_claims import LEASE, T0, committed, owner, rows


def test_claiming_again_what_the_owner_already_holds_gives_it_back_as_its_own(db):
    a, b = owner("a"), owner("b")
    first = committed(db, claims.claim, "v", ["k1", "k2"], a, now=T0, lease=LEASE)
    assert first.mine == {"k1": 1, "k2": 1}
    again = committed(db, claims.claim, "v", ["k1", "k2", "k3"], a, now=T0 + 1, lease=LEASE)
    assert again.mine == {"k1": 1, "k2": 1, "k3": 1}  # the same epoch: nobody else held them meanwhile
    assert not again.elsewhere and not again.expired and not again.reclaimed
    other = committed(db, claims.claim, "v", ["k1"], b, now=T0 + 2, lease=LEASE)
    assert list(other.elsewhere) == ["k1"] and not other.mine  # someone else's live claim is still not taken
    assert rows(db)["k1"][:2] == ("tok-a", 1)
