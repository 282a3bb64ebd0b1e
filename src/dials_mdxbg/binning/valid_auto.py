"""valid_range=auto, and the warning when a given valid_range rejects much of the data.

The tutorial's ``valid_range=0,200`` keeps a background of ~20 counts per
pixel and frame and drops Bragg peaks and zingers: its upper limit is about
10x the background. valid_range=auto makes that rule explicit: ``0`` to 10x
the *nominal background*, the median valid count per pixel and frame of a few
frames spread over the sweep (at least 1, so sparse data keep their counts).
Both come from one histogram of the sampled frames' valid values.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from dials_mdxbg.binning.blocks import run_blocks
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.errors import InputError
from dials_mdxbg.model import as_block
from dials_mdxbg.native.value_histogram import count_values

logger = logging.getLogger("dials.mdxbg.background")

SAMPLE_FRAMES = 5
"""Frames sampled (evenly spread) for the nominal background."""
TIMES_BACKGROUND = 10
"""valid_range=auto's upper limit in units of the nominal background."""
WARN_REJECTED = 0.20
"""A given valid_range rejecting more than this fraction of valid values is warned about."""
CAP = 1 << 20
"""Values at or above this share the histogram's last bin."""


def sample_frames(n_frames: int, n_sample: int = SAMPLE_FRAMES) -> list[int]:
    """Up to ``n_sample`` frame indices spread evenly over the sweep."""
    k = min(n_sample, n_frames)
    return sorted({int(round(i * (n_frames - 1) / max(k - 1, 1))) for i in range(k)})


class ValueHistogram:
    """Counts of valid values (not -1, not excluded): negatives apart, others capped."""

    def __init__(self) -> None:
        self.hist = np.zeros(CAP + 1, dtype=np.int64)
        self.negative = 0

    def add(self, values: np.ndarray) -> None:
        """Add valid values (any integer dtype)."""
        neg = values < 0
        self.negative += int(np.count_nonzero(neg))
        v = np.minimum(values[~neg], CAP).astype(np.int64)
        self.hist += np.bincount(v, minlength=CAP + 1)

    def add_frame(self, frame: np.ndarray, excluded: np.ndarray | None = None) -> None:
        """Add a masked frame's valid values: not -1, not ``excluded`` (one pass in C)."""
        self.negative += count_values(frame, excluded, self.hist)

    def merge(self, other: ValueHistogram) -> ValueHistogram:
        """Add another partial result and return self."""
        self.hist += other.hist
        self.negative += other.negative
        return self

    @property
    def total(self) -> int:
        """Valid values seen."""
        return int(self.hist.sum()) + self.negative

    def median(self) -> float:
        """Median valid value (negatives count as below 0)."""
        n = self.total
        if n == 0:
            raise InputError("valid_range=auto: the sampled frames have no valid pixel")
        cum = self.negative + np.cumsum(self.hist)
        return float(np.searchsorted(cum, (n + 1) // 2))

    def rejected(self, valid_range: tuple[int, int]) -> float:
        """Fraction of the valid values outside ``valid_range`` (inclusive)."""
        n = self.total
        if n == 0:
            return 0.0
        lo, hi = valid_range
        inside = self.hist[max(lo, 0) : min(hi, CAP - 1) + 1].sum() if hi >= 0 else 0
        if hi >= CAP:
            inside += self.hist[CAP]  # the capped values: taken as inside
        if lo < 0:
            inside += self.negative  # negatives (other than -1) counted as inside
        return 1.0 - float(inside) / n


def auto_range(nominal: float) -> tuple[int, int]:
    """valid_range=auto from the nominal background (median count per pixel and frame)."""
    return 0, int(np.ceil(TIMES_BACKGROUND * max(nominal, 1.0)))


def sample_histogram(opened, nproc: int = 1) -> ValueHistogram:
    """The valid values of a few frames of an opened source (see binning.search)."""
    frames = sample_frames(opened.axes.shape[0])
    excluded = opened.excluded

    def consume(acc: ValueHistogram, frame0: int, row0: int, block) -> None:
        block = as_block(block)
        ex = excluded(frame0, row0, block.shape) if excluded else None
        for f in range(block.shape[0]):
            if frame0 + f not in frames:
                continue
            acc.add_frame(block[f], None if ex is None else ex[f])

    out = ValueHistogram()
    for lo, hi in frame_groups(frames, opened.block_frames):
        out.merge(run_blocks(opened.tasks_for((lo, hi))(), consume, ValueHistogram, nproc))
    return out


def frame_groups(frames: list[int], block_frames: int) -> list[tuple[int, int]]:
    """Frame ranges that read the sampled frames: one per stored block that holds any.

    A stored chunk inflates whole for any of its frames, so frames sharing a
    block are read in one range (the frames between are skipped by the count).
    """
    groups: dict[int, list[int]] = {}
    for f in frames:
        groups.setdefault(f // max(block_frames, 1), []).append(f)
    return [(min(g), max(g) + 1) for g in groups.values()]


def resolve_valid_range(opened, options: BinOptions, nproc: int = 1) -> BinOptions:
    """valid_range=auto set from a sample of frames; other options are returned as they are.

    A given valid_range is checked after binning, from the run's own value
    histogram (:func:`warn_if_rejecting`): no pass of its own over the frames.
    """
    if not options.valid_auto:
        return options
    hist = sample_histogram(opened, nproc)
    n = len(sample_frames(opened.axes.shape[0]))
    nominal = hist.median()
    valid_range = auto_range(nominal)
    logger.info(
        "valid_range=auto: %d,%d (%dx the nominal background, the median valid count "
        "per pixel and frame of %d sampled frames: %g)",
        *valid_range,
        TIMES_BACKGROUND,
        n,
        nominal,
    )
    return dataclasses.replace(options, valid_range=valid_range, valid_auto=False)


def warn_if_rejecting(values, valid_range, n_frames: int) -> None:
    """Warn when ``valid_range`` rejects more than :data:`WARN_REJECTED` of the valid values.

    Args:
        values: the run's :class:`dials_mdxbg.binning.histogram.ValueHistogram` of its
            sampled frames (None when it was not taken: nothing to say).
        valid_range: the range used (None: nothing rejected).
        n_frames: frames of the sweep (names how many were sampled).
    """
    if values is None or valid_range is None:
        return
    from dials_mdxbg.binning.histogram import sampled_frames

    report = values.as_report(tuple(valid_range), n_frames)
    if not report["total"]:
        return
    rejected = (report["below"] + report["above"]) / report["total"]
    if rejected > WARN_REJECTED:
        logger.warning(
            "Warning: valid_range=%d,%d rejects %.1f%% of the valid pixel values of %d sampled "
            "frames; valid_range=auto sets it from the data",
            *valid_range,
            100 * rejected,
            len(sampled_frames(n_frames)),
            extra={"code": "valid_range_rejects"},
        )
