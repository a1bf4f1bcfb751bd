"""The vendors' documented limits, in one place (cheap to import from DAG-parsed modules)."""

from __future__ import annotations

#: Xoxoday documents no per-request maximum of recipients; its dashboard's bulk cap is 500.
XOXODAY_MAX_BATCH_SIZE = 500

#: Capillary revokeEarn: at most 1000 earn ids per request, all promotions together.
CAPILLARY_MAX_EARN_IDS = 1000

#: Capillary's rate limit on demo clusters (per API key); production limits are brand-specific,
#: and another page of the docs says 100 — so it is a setting, this is only its default.
CAPILLARY_DEFAULT_REQUESTS_PER_MINUTE = 1000
