"""Exact bin sums of an image series and the map they give, on numpy arrays.

mdx2's rule, reproduced exactly (sections: :mod:`dials_mdxbg.binning.grid`). A bin's value is the
mean of its valid counts (not -1, inside ``valid_range`` inclusive, not in
the user mask), divided by the mean exposure time of its frames; a bin with
no valid count is NaN.

Here the sums are accumulated as exact integers block by block, so the result
does not depend on how the frames are cut into blocks (one frame at a time,
HDF5 chunk rows, or parts of a distributed run): the final float division is
the same ``sum * 1.0 / count`` that ``numpy.ma.mean`` does. The sums are
added by the native backend (:func:`dials_mdxbg.native.backend.backend`);
:func:`add_block` is its numpy reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dials_mdxbg.binning.grid import BinGrid
from dials_mdxbg.binning.histogram import ValueHistogram
from dials_mdxbg.model import MASKED_VALUE
from dials_mdxbg.native.backend import backend


def _reduce_last_axis(array: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Sum consecutive runs of ``sizes`` along the last axis.

    mdx2's sections come in at most two sizes (long ones first), so the sum is
    two reshapes instead of a slow ``reduceat``.
    """
    long_size = int(sizes[0])
    n_long = int(np.count_nonzero(sizes == long_size))
    split = n_long * long_size
    lead = array.shape[:-1]
    parts = [array[..., :split].reshape(*lead, n_long, long_size).sum(axis=-1)]
    if n_long < len(sizes):
        short_size = int(sizes[-1])
        rest = array[..., split:].reshape(*lead, len(sizes) - n_long, short_size)
        parts.append(rest.sum(axis=-1))
    return np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


def _reduce_runs(array: np.ndarray, starts: np.ndarray, axis: int, dtype) -> np.ndarray:
    """Sum consecutive runs along ``axis`` (run i starts at ``starts[i]``).

    Same result as ``np.add.reduceat``, which is ~10x slower along a
    non-last axis; few runs, each a vectorised add of whole rows.
    """
    bounds = [*starts.tolist(), array.shape[axis]]
    shape = list(array.shape)
    shape[axis] = len(starts)
    out = np.empty(shape, dtype=dtype)
    lead = (slice(None),) * axis
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        np.add.reduce(array[lead + (slice(a, b),)], axis=axis, dtype=dtype, out=out[lead + (i,)])
    return out


def valid_mask(
    block: np.ndarray,
    valid_range: tuple[int, int] | None,
    excluded: np.ndarray | None = None,
) -> np.ndarray:
    """True where a count takes part in a bin mean."""
    if valid_range is not None and valid_range[0] >= 0:
        # One unsigned comparison covers both ends, and -1 (masked) wraps high.
        lo, hi = int(valid_range[0]), int(valid_range[1])
        shifted = block.view(np.uint32) - np.uint32(lo) if lo else block.view(np.uint32)
        valid = shifted <= np.uint32(min(hi - lo, 2**32 - 1))
    else:
        valid = block != MASKED_VALUE
        if valid_range is not None:
            valid &= block >= valid_range[0]
            valid &= block <= valid_range[1]
    if excluded is not None:
        valid &= ~excluded
    return valid


@dataclass
class BinSums:
    """Exact per-bin sums of valid counts; mergeable in any order.

    ``total`` and ``count`` are integers so that adding partial sums from any
    partition of the frames gives bit-identical results; ``total_sq`` (float)
    only feeds the standard error. ``values``: the histogram of sampled pixel
    values, when asked for (:mod:`dials_mdxbg.binning.histogram`).
    """

    total: np.ndarray
    count: np.ndarray
    total_sq: np.ndarray
    values: ValueHistogram | None = None

    @classmethod
    def zeros(cls, shape: tuple[int, int, int]) -> BinSums:
        """Empty accumulator for a map of ``shape``."""
        return cls(
            np.zeros(shape, dtype=np.int64),
            np.zeros(shape, dtype=np.int64),
            np.zeros(shape, dtype=np.float64),
        )

    def merge(self, other: BinSums) -> BinSums:
        """Add another partial result into this one (in place) and return self."""
        self.total += other.total
        self.count += other.count
        self.total_sq += other.total_sq
        if other.values is not None:
            if self.values is None:
                self.values = ValueHistogram.zeros(other.values.cap)
            self.values.merge(other.values)
        return self


def _sum_dtype(valid_range, n_values: int) -> tuple[type, type]:
    """Narrowest exact dtypes for sums (and sums of squares) of ``n_values`` counts.

    int32 arithmetic is several times faster; it is used only when no partial
    sum can overflow, so the result is exact either way.
    """
    if valid_range is not None:
        top = max(abs(int(valid_range[0])), abs(int(valid_range[1])))
        if top * n_values < 2**31 - 1:
            square = np.int32 if top * top * n_values < 2**31 - 1 else np.float64
            return np.int32, square
    return np.int64, np.float64


def accumulate_block(
    sums: BinSums,
    grid: BinGrid,
    block: np.ndarray,
    frame0: int,
    row0: int,
    valid_range: tuple[int, int] | None = None,
    excluded: np.ndarray | None = None,
    keep: np.ndarray | None = None,
) -> None:
    """Add a block of frames into the bin sums.

    Args:
        sums: accumulator for the whole map (updated in place).
        grid: the bin layout.
        block: int32 counts, shape (n, rows, nx) covering frames
            ``frame0 .. frame0+n`` and image rows ``row0 .. row0+rows``, full width.
        frame0: index of the block's first frame in the series.
        row0: index of the block's first row.
        valid_range: inclusive (min, max) of counts that take part, or None.
        excluded: optional bool array like ``block``, True = excluded (mdx2 mask).
        keep: optional extra bool array like ``block``, False = rejected
            (used by the outlier-rejecting estimator).
    """
    n, rows, nx = block.shape
    if nx != grid.shape[2]:
        raise ValueError(f"block width {nx} does not match the series width {grid.shape[2]}")
    if excluded is not None:
        keep = ~excluded if keep is None else keep & ~excluded
    f_bins = grid.phi_index[frame0 : frame0 + n]
    y_bins = grid.y_index[row0 : row0 + rows]
    backend().bin_block(block, f_bins, y_bins, grid.x_edges, valid_range, sums, keep)


def add_block(
    block: np.ndarray,
    f_bins: np.ndarray,
    y_bins: np.ndarray,
    x_edges: np.ndarray,
    valid_range: tuple[int, int] | None,
    sums: BinSums,
    keep: np.ndarray | None = None,
) -> None:
    """Add a block's valid counts into ``sums``: the numpy reference of the bin kernel.

    Args:
        block: int32 counts (n, rows, nx), full width.
        f_bins: frame bin of each frame of the block (in runs; a bin may recur, as in a
            grid split by frame parity).
        y_bins: row bin of each row of the block (non-decreasing).
        x_edges: column bin edges (nbx + 1), mdx2's sections.
        valid_range: inclusive (min, max) of counts that take part, or None.
        sums: accumulator for the whole map (updated in place).
        keep: optional bool array like ``block``, False = left out.
    """
    n, rows, _ = block.shape
    x_sizes = np.diff(x_edges)
    valid = valid_mask(block, valid_range)
    if keep is not None:
        valid &= keep
    f_starts = np.flatnonzero(np.diff(f_bins, prepend=-1))
    y_starts = np.flatnonzero(np.diff(y_bins, prepend=-1))
    total_type, square_type = _sum_dtype(valid_range, n * rows * int(x_sizes[0]))
    values = np.where(valid, block, 0).astype(total_type, copy=False)

    def reduce(part: np.ndarray, dtype) -> np.ndarray:
        # Frames, then rows: adds of whole contiguous rows (fast); then the
        # much smaller array along x.
        part = _reduce_runs(part, f_starts, 0, dtype)
        part = _reduce_runs(part, y_starts, 1, dtype)
        return _reduce_last_axis(part, x_sizes)

    yi = y_bins[y_starts]
    squares = np.multiply(values, values, dtype=square_type)
    parts = (
        (sums.total, reduce(values, total_type)),
        (sums.count, reduce(valid, np.int32)),
        (sums.total_sq, reduce(squares, square_type)),
    )
    # One frame run at a time: runs of a grid that interleaves frames (e.g. by
    # parity) can share a bin, and a fancy-indexed += would add only one of them.
    for r, f in enumerate(f_bins[f_starts].tolist()):
        for target, part in parts:
            target[f, yi, :] += part[r]


def finalize(
    sums: BinSums, grid: BinGrid, exposure_times: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn sums into the map, as mdx2 computes it.

    Args:
        sums: accumulated sums over the whole series.
        grid: the bin layout.
        exposure_times: per-frame exposure times (s).

    Returns:
        (signal, errors, count): counts/s (NaN for empty bins), the standard
        error of the mean in counts/s (NaN with fewer than two counts), and
        the number of valid pixels in each bin.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.total * 1.0 / sums.count
        mean[sums.count == 0] = np.nan
        n = sums.count.astype(np.float64)
        var = (sums.total_sq - sums.total.astype(np.float64) * mean) / (n - 1)
        sem = np.sqrt(np.maximum(var, 0.0) / n)
        sem[sums.count < 2] = np.nan
    times = np.array(
        [exposure_times[a:b].mean() for a, b in zip(grid.phi_edges[:-1], grid.phi_edges[1:])]
    )
    scale = times[:, np.newaxis, np.newaxis]
    return mean / scale, sem / scale, sums.count.copy()
