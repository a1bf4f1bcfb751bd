"""The vendors' documented limits and answers, in one place (cheap to import from DAG-parsed modules)."""

from __future__ import annotations

from airflow_provider_loyalty.outcomes import AlreadyReversed

#: Xoxoday documents no per-request maximum of recipients; its dashboard's bulk cap is 500.
XOXODAY_MAX_BATCH_SIZE = 500

#: Capillary revokeEarn: at most 1000 earn ids per request, all promotions together.
CAPILLARY_MAX_EARN_IDS = 1000

#: Capillary's rate limit on demo clusters (per API key); production limits are brand-specific,
#: and another page of the docs says 100 — so it is a setting, this is only its default.
CAPILLARY_DEFAULT_REQUESTS_PER_MINUTE = 1000

#: What Xoxoday answers when a cancelled issuance is cancelled again (the sandbox: "Points already
#: cancelled"); both spellings, and "reversed", as other Plum pages word it.
XOXODAY_ALREADY_REVERSED = AlreadyReversed(messages=(r"\balready\s+(cancell?ed|reversed)\b",))

#: Capillary answers 731 "Invalid earn id" for an earn it revoked already (a revoked earn is no
#: longer a valid earn): for an earn we sent before, while it was valid, that means revoked.
CAPILLARY_ALREADY_REVERSED = AlreadyReversed(codes=("731",), messages=(r"\balready\s+revoked\b",))
