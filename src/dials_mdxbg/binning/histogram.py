"""Histogram of the pixel values a binning run sees, for the report.

What it costs, and why it samples frames. The C binning kernel takes about
11 ms per Pilatus 6M frame; a full ``np.bincount`` of every frame (add, clip,
count: ~12-15 ms per 6M frame, measured) would more than double that. A
histogram of a few hundred integer values needs nowhere near 6M pixels per
frame, let alone every frame, so only :func:`sampled_frames` are counted:
one frame in :data:`FRAMES_PER_SAMPLE`, evenly spread over the sweep, at most
:data:`MAX_SAMPLED_FRAMES` (5 of 50 frames; 8 of 3600): at most ~0.15 s per
run whatever its length, every pixel of each sampled frame. The sample is a
fixed set of frames, so the histogram is the same for any partition of the
frames into blocks, threads or dask tasks (integer counts, merged in any
order), like the map itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dials_mdxbg.native import lib
from dials_mdxbg.native.value_histogram import add_masked_values

FRAMES_PER_SAMPLE = 10
"""One frame sampled in this many."""

MAX_SAMPLED_FRAMES = 8
"""At most this many frames sampled, whatever the sweep's length."""

PIECE = 1 << 20
"""Pixels counted at a time (bounds the temporary index array to 8 MB)."""


def sampled_frames(n_frames: int) -> np.ndarray:
    """The frames whose pixel values are histogrammed: evenly spread, first and last included."""
    k = min(MAX_SAMPLED_FRAMES, -(-n_frames // FRAMES_PER_SAMPLE), n_frames)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, n_frames - 1, k).round().astype(np.int64))


def histogram_cap(valid_range: tuple[int, int] | None) -> int:
    """Values 0 .. cap-1 get a bin each; larger ones share the overflow bin.

    Twice the top of ``valid_range`` (at least 256), so both sides of the
    range and what it rejects are seen; 1024 without a range (background
    counts are small: larger values are hot pixels and overloads).
    """
    if valid_range is None:
        return 1024
    return max(256, 2 * (int(valid_range[1]) + 1))


@dataclass
class ValueHistogram:
    """Counts of pixel values in sampled frames: exact integers, mergeable in any order.

    ``counts[0]`` counts masked pixels (-1, or excluded by an mdx2 mask),
    ``counts[1 + v]`` the value ``v`` for ``0 <= v < cap``, ``counts[cap + 1]``
    the values ``>= cap``.
    """

    counts: np.ndarray

    @classmethod
    def zeros(cls, cap: int) -> ValueHistogram:
        """Empty histogram with unit bins for 0 .. cap-1."""
        return cls(np.zeros(cap + 2, dtype=np.int64))

    @property
    def cap(self) -> int:
        """First value of the overflow bin."""
        return len(self.counts) - 2

    @property
    def masked(self) -> int:
        """Masked pixels seen."""
        return int(self.counts[0])

    @property
    def overflow(self) -> int:
        """Values >= cap seen."""
        return int(self.counts[-1])

    @property
    def values(self) -> np.ndarray:
        """Counts of the values 0 .. cap-1."""
        return self.counts[1:-1]

    @property
    def pixels(self) -> int:
        """All pixels seen, masked included."""
        return int(self.counts.sum())

    def add(self, frame: np.ndarray, excluded: np.ndarray | None = None) -> None:
        """Count the values of (part of) a masked int32 frame (-1 = masked).

        In pieces of :data:`PIECE` pixels: the shifted index array is 8 bytes a
        pixel, 145 MB for a whole Eiger 16M frame (measured: +250 MB peak of the
        one-step binning with the report on), 8 MB a piece.
        """
        if lib.loaded() and frame.dtype == np.int32:
            # One pass in C (no index array).
            add_masked_values(frame, self.counts, excluded)
            return
        values = frame.ravel()
        flags = None if excluded is None else excluded.ravel()
        for a in range(0, values.size, PIECE):
            # value + 1 straight into bincount's own index type (no extra cast pass),
            # then clip: masked (-1) -> 0, values >= cap -> cap + 1.
            x = np.add(values[a : a + PIECE], 1, dtype=np.intp)
            np.clip(x, 0, self.cap + 1, out=x)
            if flags is not None:
                x[flags[a : a + PIECE]] = 0
            self.counts += np.bincount(x, minlength=len(self.counts))

    def median(self) -> float:
        """Lower median of the values >= 0 seen (the overflow bin counts as ``cap``)."""
        counted = self.counts[1:]
        n = int(counted.sum())
        if n == 0:
            return float("nan")
        return float(np.searchsorted(np.cumsum(counted), (n + 1) // 2))

    def merge(self, other: ValueHistogram) -> ValueHistogram:
        """Add another partial histogram into this one (in place) and return self."""
        self.counts += other.counts
        return self

    def as_report(self, valid_range: tuple[int, int] | None, n_frames: int) -> dict:
        """The report's histogram: unit bins around the integers, exact counts per side."""
        values = self.values
        total = int(values.sum()) + self.overflow
        below = above = 0
        if valid_range is not None:
            lo, hi = int(valid_range[0]), int(valid_range[1])
            below = int(values[: max(lo, 0)].sum())
            above = int(values[max(hi + 1, 0) :].sum()) + self.overflow
        top = int(np.flatnonzero(values)[-1]) + 1 if values.any() else 1
        if valid_range is not None:  # show the upper limit and some of what it rejects
            hi = int(valid_range[1])
            top = max(top, min(hi + max(2, hi // 10), self.cap))
        shown = values[:top]
        k = len(sampled_frames(n_frames))
        note = f"Sampled: every pixel of {k} of {n_frames} frames, evenly spread."
        if self.overflow:
            note += f" {self.overflow:,} values of {self.cap} or more are not drawn."
        return {
            "edges": np.arange(top + 1) - 0.5,
            "counts": shown,
            "valid_range": valid_range,
            "below": below,
            "above": above,
            "total": total,
            "overflow": self.overflow,
            "masked": self.masked,
            "note": note,
        }
