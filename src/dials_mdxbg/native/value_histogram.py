"""Counting a frame's valid pixel values into a histogram: the C kernel beside its numpy twin.

What ``valid_range=auto`` and the check of a given valid_range count in their
sampled frames (:mod:`dials_mdxbg.binning.valid_auto`): every value that is
not -1 (masked) and not excluded; values ``>= 0`` in unit bins up to ``cap``
(larger ones share the last), other negatives counted apart. numpy needs a
mask, two copies, a cast and a ``cap``-bin count per call (~9 ms per block of
211 rows of a Pilatus 6M frame); the C kernel reads the frame once.
"""

from __future__ import annotations

import numpy as np

from dials_mdxbg.model import MASKED_VALUE
from dials_mdxbg.native import lib


def count_values(values: np.ndarray, skip: np.ndarray | None, hist: np.ndarray) -> int:
    """Add the valid ``values`` into ``hist`` in place; returns the other negatives seen.

    Args:
        values: int32 pixel values (any shape), -1 = masked.
        skip: True where a pixel is excluded (same shape), or None.
        hist: int64 counts of ``cap + 1`` bins: ``hist[v]`` for ``0 <= v < cap``,
            ``hist[cap]`` for the values ``>= cap``.

    Returns:
        How many valid values were negative (not -1); they are not in ``hist``.
    """
    cap = hist.size - 1
    c = lib.library()
    if (
        c is not None
        and values.dtype == np.int32
        and hist.dtype == np.int64
        and hist.flags.c_contiguous
    ):
        values = np.ascontiguousarray(values)
        flags = None
        if skip is not None:
            flags = np.ascontiguousarray(skip, dtype=np.bool_)
            if flags.shape != values.shape:
                raise ValueError(f"skip has shape {flags.shape}, values {values.shape}")
        return int(
            c.mdx_value_histogram(
                lib.ptr(values),
                None if flags is None else lib.ptr(flags),
                values.size,
                cap,
                lib.ptr(hist),
            )
        )
    return count_values_numpy(values, skip, hist)


def count_values_numpy(values: np.ndarray, skip: np.ndarray | None, hist: np.ndarray) -> int:
    """The numpy twin of :func:`count_values` (the same counts)."""
    cap = hist.size - 1
    keep = values != MASKED_VALUE
    if skip is not None:
        keep &= ~skip
    kept = values[keep]
    negative = kept < 0
    v = np.minimum(kept[~negative], cap).astype(np.int64)
    hist += np.bincount(v, minlength=cap + 1)
    return int(np.count_nonzero(negative))


def add_masked_values(
    masked: np.ndarray, counts: np.ndarray, skip: np.ndarray | None = None
) -> None:
    """Add a masked int32 frame (or rows of one) to a value histogram's counts, in place.

    The layout of :class:`~dials_mdxbg.binning.histogram.ValueHistogram`:
    ``counts[0]`` the masked (-1) and other negative values, ``counts[1 + v]``
    the value ``v`` for ``0 <= v < cap``, ``counts[cap + 1]`` the values
    ``>= cap`` (``cap = counts.size - 2``); a ``skip``ped pixel counts as
    masked. The C decode-and-bin kernel counts its rows the same way.
    """
    counted = counts[1:]
    before = int(counted.sum())
    count_values(masked, skip, counted)
    counts[0] += masked.size - (int(counted.sum()) - before)
