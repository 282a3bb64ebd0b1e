"""valid_range=auto, and the warning when a given valid_range rejects much of the data.

The tutorial's ``valid_range=0,200`` keeps a background of ~20 counts per
pixel and frame and drops Bragg peaks and zingers: its upper limit is about
10x the background. valid_range=auto makes that rule explicit: ``0`` to 10x
the *nominal background*, the median valid count per pixel and frame of the
frames the report's histogram samples (at least 1, so sparse data keep their
counts): the same :class:`~dials_mdxbg.binning.histogram.ValueHistogram`, with
a cap far above any background.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from dials_mdxbg.binning.blocks import run_blocks
from dials_mdxbg.binning.histogram import ValueHistogram, sampled_frames
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.errors import InputError
from dials_mdxbg.model import as_block

logger = logging.getLogger("dials.mdxbg.background")

TIMES_BACKGROUND = 10
"""valid_range=auto's upper limit in units of the nominal background."""
WARN_REJECTED = 0.20
"""A given valid_range rejecting more than this fraction of valid values is warned about."""
CAP = 1 << 20
"""Values at or above this share the histogram's last bin (far above any background)."""


def auto_range(nominal: float) -> tuple[int, int]:
    """valid_range=auto from the nominal background (median count per pixel and frame)."""
    return 0, int(np.ceil(TIMES_BACKGROUND * max(nominal, 1.0)))


def sample_histogram(opened, nproc: int = 1) -> ValueHistogram:
    """The values of the report histogram's sampled frames of an opened source, before
    any valid_range (see :func:`dials_mdxbg.binning.histogram.sampled_frames`)."""
    sampled = sampled_frames(opened.axes.shape[0]).tolist()  # sorted, unique
    frames = set(sampled)
    excluded = opened.excluded

    def consume(acc: ValueHistogram, frame0: int, row0: int, block) -> None:
        block = as_block(block)
        ex = excluded(frame0, row0, block.shape) if excluded else None
        for f in range(block.shape[0]):
            if frame0 + f not in frames:
                continue
            acc.add(block[f], None if ex is None else ex[f])

    def zeros() -> ValueHistogram:
        return ValueHistogram.zeros(CAP)

    out = zeros()
    for lo, hi in frame_groups(sampled, opened.block_frames):
        out.merge(run_blocks(opened.tasks_for((lo, hi))(), consume, zeros, nproc))
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
    n = len(sampled_frames(opened.axes.shape[0]))
    if not hist.values.any() and not hist.overflow:
        raise InputError("valid_range=auto: the sampled frames have no valid pixel")
    nominal = hist.median()
    valid_range = auto_range(nominal)
    logger.info(
        "valid_range=auto: %d,%d (%dx the nominal background, the median valid count "
        "per pixel and frame of %d sampled frame%s: %g)",
        *valid_range,
        TIMES_BACKGROUND,
        n,
        "" if n == 1 else "s",
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
