"""Where Xoxoday's rotating token pair is kept between task runs.

Xoxoday invalidates a refresh token as soon as it is used: the pair a refresh returns is the only
one that works tomorrow. It is stored in an Airflow Variable (masked in the UI, its key contains
``token``), read back before the connection's extra, by any worker.

The stored pair remembers a fingerprint of the connection's refresh token it descends from: when
an operator pastes a fresh pair from the dashboard into the connection, the connection wins again.
The pair's own rules live here too: the pair a refresh answer gives (:meth:`TokenPair.rotated`) and
whether a stored pair is a newer rotation of ours (:func:`newer_stored_pair`); the hook does the
refreshing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import asdict, dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: Refresh proactively when the access token expires within this many seconds.
REFRESH_MARGIN_SECONDS = 300.0


@dataclass(frozen=True)
class TokenPair:
    """An access token, its refresh token and their expiries (epoch seconds, ``None`` if unknown).

    :param origin: fingerprint of the connection refresh token this pair descends from.
    """

    access_token: str
    refresh_token: str | None
    access_token_expiry: float | None = None
    refresh_token_expiry: float | None = None
    origin: str | None = None
    #: when to refresh proactively (epoch seconds): shortly before the access token expires.
    refresh_after: float | None = None

    def __repr__(self) -> str:  # never print tokens, even in a debugger or a traceback
        return f"TokenPair(access_token_expiry={self.access_token_expiry}, origin={self.origin})"

    def rotated(self, token: Any, *, now: float) -> TokenPair:
        """The pair a refresh answer (:class:`~airflow_provider_loyalty.models.XoxodayTokenResponse`) gives.

        The expiry comes from ``expires_in`` (relative: immune to clock skew and unit mix-ups), else
        from ``access_token_expiry`` (epoch ms) when that lies in the future. The refresh token is
        kept if the answer carries none.
        """
        lifetime: float | None = None
        if token.expires_in and token.expires_in > 0:
            lifetime = float(token.expires_in)
        elif token.access_token_expiry and token.access_token_expiry / 1000 > now:
            lifetime = token.access_token_expiry / 1000 - now
        expiry = now + lifetime if lifetime is not None else None
        # renew ahead of expiry: 10 % of the lifetime, at most REFRESH_MARGIN_SECONDS
        refresh_after = now + lifetime - min(REFRESH_MARGIN_SECONDS, lifetime / 10) if lifetime is not None else None
        refresh_expiry = token.refresh_token_expiry / 1000 if token.refresh_token_expiry else None
        return TokenPair(
            access_token=token.access_token,
            refresh_token=token.refresh_token or self.refresh_token,
            access_token_expiry=expiry,
            refresh_token_expiry=refresh_expiry,
            origin=self.origin,
            refresh_after=refresh_after,
        )

    def mask(self) -> None:
        """Register both tokens with Airflow's secret masker (logs never show them)."""
        from airflow.sdk.log import mask_secret

        for secret in (self.access_token, self.refresh_token):
            if secret:
                mask_secret(secret)

    def to_json(self) -> str:
        """Serialise for storage."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TokenPair | None:
        """Read a stored pair; ``None`` if the text is not one."""
        try:
            raw = json.loads(text)
            return cls(
                access_token=str(raw["access_token"]),
                refresh_token=raw.get("refresh_token"),
                access_token_expiry=raw.get("access_token_expiry"),
                refresh_token_expiry=raw.get("refresh_token_expiry"),
                origin=raw.get("origin"),
                refresh_after=raw.get("refresh_after"),
            )
        except (ValueError, TypeError, KeyError):
            return None


def fingerprint(secret: str | None) -> str | None:
    """Return a non-reversible short fingerprint of a token."""
    if not secret:
        return None
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class TokenStore(Protocol):
    """Somewhere a rotated pair survives the task."""

    def load(self) -> TokenPair | None:
        """Return the stored pair, or ``None``."""

    def save(self, pair: TokenPair) -> None:
        """Persist ``pair``; raise if it cannot be persisted."""


class MemoryTokenStore:
    """A process-local store (tests, scripts outside Airflow tasks)."""

    def __init__(self, pair: TokenPair | None = None) -> None:
        self.pair = pair
        self.saves = 0
        self._lock = threading.Lock()

    def load(self) -> TokenPair | None:
        """Return the stored pair."""
        with self._lock:
            return self.pair

    def save(self, pair: TokenPair) -> None:
        """Keep ``pair``."""
        with self._lock:
            self.pair = pair
            self.saves += 1


class VariableTokenStore:
    """The pair in the Airflow Variable ``loyalty_xoxoday_token__<conn_id>`` (JSON).

    Inside a task the Variable is read and written through the Task SDK (``airflow.sdk.Variable``),
    so any worker sees the pair another one stored. Outside a task (a script, ``dag.test()``
    helpers, the API server's connection test) the metadata database is used directly when one is
    configured. If the pair cannot be written anywhere it lives only in this store object and an
    error says so — a rotation that is not persisted locks the next run out.

    :param conn_id: the Xoxoday connection id; one pair per connection.
    """

    def __init__(self, conn_id: str) -> None:
        self.key = f"loyalty_xoxoday_token__{conn_id}"
        self._unsaved: TokenPair | None = None

    def load(self) -> TokenPair | None:
        """Read the stored pair (a pair that could not be persisted from this object wins)."""
        if self._unsaved is not None:
            return self._unsaved
        text = self._read()
        if not text:
            return None
        pair = TokenPair.from_json(text if isinstance(text, str) else json.dumps(text))
        if pair is None:
            log.warning("Variable %s does not hold a token pair; ignoring it", self.key)
        return pair

    def _read(self) -> object:
        from airflow_provider_loyalty._variables import get_variable

        try:
            return get_variable(self.key)
        except Exception as exc:  # no API server reachable, no metadata DB, secrets backend down...
            log.warning("Could not read Variable %s (%s); using the connection's tokens", self.key, type(exc).__name__)
            return None

    def save(self, pair: TokenPair) -> None:
        """Write ``pair`` to the Variable; if that fails, keep it here and log an error."""
        from airflow_provider_loyalty._variables import in_task_context, set_variable

        try:
            set_variable(self.key, pair.to_json(), "Rotated Xoxoday token pair (airflow-provider-loyalty)")
        except Exception as exc:
            self._unsaved = pair
            log.error(
                "The rotated Xoxoday token pair could NOT be stored in Variable %s (%s)%s. This run goes on "
                "with it, but the next run will need a new pair from the Xoxoday dashboard in the connection.",
                self.key,
                type(exc).__name__,
                "" if in_task_context() else " — not inside an Airflow task",
            )
            return
        self._unsaved = None


def newer_stored_pair(store: TokenStore, stale: TokenPair) -> TokenPair | None:
    """The stored pair, if another task rotated ``stale`` (same origin, another refresh token)."""
    stored = store.load()
    if stored is None or not stored.refresh_token or stored.refresh_token == stale.refresh_token:
        return None
    if stored.origin is not None and stale.origin is not None and stored.origin != stale.origin:
        return None  # from another connection pair; ours replaced it
    stored.mask()
    return stored
