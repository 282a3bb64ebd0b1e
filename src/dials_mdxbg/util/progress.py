"""Progress lines for long loops, in the command's log: which pass, how far, how long to go."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("dials.mdxbg")

ETA_AFTER = 3.0
"""Seconds into a pass after which its lines carry an estimate of the time left."""


class Progress:
    """Log progress of a long loop at most every few seconds (and at the end).

    ``what`` names the pass (``"binning: frames"``). Counting down again (the
    same frames read a second time, e.g. the clipping pass of clipped_mean)
    starts a new pass, named ``<what>, pass 2`` in its lines.
    """

    def __init__(self, total: int, what: str, every: float = 5.0):
        self.total = total
        self.what = what
        self.every = every
        self.start = time.perf_counter()
        self._last = self.start
        self._pass_start = self.start
        self._done = 0
        self.passes = 1

    def update(self, done: int) -> None:
        """Report that ``done`` of ``total`` items are finished (in the current pass)."""
        now = time.perf_counter()
        if done < self._done or (self._done >= self.total and done <= self._done):
            self.passes += 1  # the frames are being read again: a new pass
            self._pass_start = self._last = now
        self._done = done
        if done < self.total and now - self._last < self.every:
            return
        self._last = now
        logger.info("  %s", self.line(done, now - self._pass_start))

    def line(self, done: int, elapsed: float) -> str:
        """``binning: frames 40/90 (44%), 4.1 s, 9.8/s, ETA 5 s`` (the ETA after a few s)."""
        rate = done / elapsed if elapsed > 0 else 0.0
        name = self.what if self.passes == 1 else f"{self.what}, pass {self.passes}"
        text = (
            f"{name} {done}/{self.total} ({100.0 * done / max(self.total, 1):.0f}%), "
            f"{elapsed:.1f} s, {rate:.1f}/s"
        )
        if done < self.total and elapsed >= ETA_AFTER and rate > 0:
            text += f", ETA {(self.total - done) / rate:.0f} s"
        return text

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start
