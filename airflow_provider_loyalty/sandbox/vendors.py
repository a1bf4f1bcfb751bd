"""Names of the two emulated vendors, shared by the state, the statistics and the HTTP layer."""

from __future__ import annotations

XOXODAY = "xoxoday"
CAPILLARY = "capillary"
# Order matters: the request log stores a vendor as its index in this tuple.
VENDORS = (XOXODAY, CAPILLARY)

# The endpoint of each vendor that its rate limit applies to (and that the statistics window counts).
API_ENDPOINTS = {XOXODAY: "cancel_points", CAPILLARY: "revoke_earn"}
