"""fill_empty: give empty bins a value from their valid neighbours, so mdx2 never sees NaN.

One empty bin makes mdx2.correct's background NaN for every pixel whose
interpolation stencil touches it (see :mod:`dials_mdxbg.binning.stencil`),
i.e. up to a whole bin around it in phi, y and x. Filling the empty bins
removes that loss; the filled values are marked in a separate dataset and
their ``pixel_count`` stays 0.
"""

from __future__ import annotations

import numpy as np

from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.errors import InputError
from dials_mdxbg.model import BinnedMap


def _box3(a: np.ndarray) -> np.ndarray:
    """Sum over each element's 3 x 3 neighbourhood (zero outside)."""
    p = np.pad(a, 1)
    s = p[:-2] + p[1:-1] + p[2:]
    return s[:, :-2] + s[:, 1:-1] + s[:, 2:]


def fill_empty(signal: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Fill empty bins from valid neighbours.

    Rule: in each phi plane, every empty bin with known neighbours among the 8
    around it in y/x takes their plain average (normalised convolution); this
    repeats, so a larger hole closes from its rim inwards, one ring of bins per
    step. A phi plane with no valid bin at all then takes, bin by bin, the
    average of the nearest planes before and after it that have values (or the
    one there is).

    Args:
        signal: the map (phi, y, x); values at ``empty`` are ignored.
        empty: True where a bin had no valid pixel.

    Returns:
        The filled map (finite wherever ``signal`` is finite or was empty).

    Raises:
        InputError: every bin is empty, so there is nothing to fill from.
    """
    if empty.all():
        raise InputError("fill_empty=True, but every bin of the map is empty: nothing to fill from")
    out = np.where(empty, 0.0, signal).astype(np.float64)
    known = ~empty
    for k in range(out.shape[0]):
        if not known[k].any() or known[k].all():
            continue
        plane, have = out[k], known[k].copy()
        while not have.all():
            total = _box3(np.where(have, plane, 0.0))
            n = _box3(have.astype(np.float64))
            new = ~have & (n > 0)
            plane[new] = total[new] / n[new]
            have |= new
        known[k] = have
    full = np.flatnonzero(known.any(axis=(1, 2)))
    for k in np.flatnonzero(~known.any(axis=(1, 2))):
        before, after = full[full < k], full[full > k]
        near = [int(p[i]) for p, i in ((before, -1), (after, 0)) if p.size]
        out[k] = np.mean([out[p] for p in near], axis=0)
    return out.astype(signal.dtype, copy=False)


def fill_map(binned: BinnedMap, options: BinOptions) -> BinnedMap:
    """fill_empty: fill the empty bins and flag them (pixel_count stays 0)."""
    if options.fill_empty:
        empty = binned.count == 0
        if empty.any():
            binned.signal = fill_empty(binned.signal, empty)
        binned.filled = empty
    return binned
