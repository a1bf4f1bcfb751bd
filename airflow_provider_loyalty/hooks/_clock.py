"""Wall clock, monotonic clock and sleep, injectable: tests assert the waits instead of sleeping."""

from __future__ import annotations

import threading
import time


class Clock:
    """Wall clock, monotonic clock and sleep, injectable so tests never wait for real."""

    def monotonic(self) -> float:
        """Return a monotonic timestamp in seconds."""
        return time.monotonic()

    def time(self) -> float:
        """Return the wall-clock time as epoch seconds (for HTTP dates and token expiries)."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, seconds: float, event: threading.Event) -> None:
        """Block for ``seconds``, or until ``event`` is set (a wait another thread may cut short)."""
        if seconds > 0:
            event.wait(seconds)


SYSTEM_CLOCK = Clock()
