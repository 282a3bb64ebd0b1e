"""Progress lines for long loops, in the command's log."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("dials.mdxbg")


class Progress:
    """Log progress of a long loop at most every few seconds (and at the end)."""

    def __init__(self, total: int, what: str, every: float = 5.0):
        self.total = total
        self.what = what
        self.every = every
        self.start = time.perf_counter()
        self._last = self.start

    def update(self, done: int) -> None:
        """Report that ``done`` of ``total`` items are finished."""
        now = time.perf_counter()
        if done < self.total and now - self._last < self.every:
            return
        self._last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        logger.info(
            "  %s %d/%d (%.0f%%), %.1f s, %.1f/s",
            self.what,
            done,
            self.total,
            100.0 * done / max(self.total, 1),
            elapsed,
            rate,
        )

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start
