"""What the engine asks of a vendor hook, besides the one call each operator makes through it."""

from __future__ import annotations

from typing import Any, Protocol


class ReversalHook(Protocol):
    """What the engine asks of a vendor hook besides the operator's own :meth:`ReversalOperator.call`."""

    def prepare(self) -> None:
        """Check the connection (and get a token) before the first request; a fatal error fails the task."""

    def close(self) -> None:
        """Release pooled connections."""

    def waited_seconds(self) -> float:
        """Seconds held back by the vendor's rate-limit windows so far."""

    def pace_text(self) -> str:
        """The pace in force, for progress lines."""

    def pace_report(self) -> dict[str, Any]:
        """The pace in force and what ``"auto"`` learned, for the summary."""

    def defer_rate_limits_after(self, seconds: float | None) -> None:
        """A vendor rate-limit window longer than ``seconds`` stops the request for the triggerer to wait out.

        It ends in a ``VendorRateLimitError`` whose ``resume_after`` is the window; ``None``: always wait.
        """
