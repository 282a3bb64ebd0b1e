"""Exact bin sums of an image series and the map they give, on numpy arrays.

mdx2's rule, reproduced exactly (sections: :mod:`dials_mdxbg.binning.grid`). A bin's value is the
mean of its valid counts (not -1, inside ``valid_range`` inclusive, not in
the user mask), divided by the mean exposure time of its frames; a bin with
no valid count is NaN.

Here the sums are accumulated as exact integers block by block, so the result
does not depend on how the frames are cut into blocks (one frame at a time,
HDF5 chunk rows, or parts of a distributed run): the final float division is
the same ``sum * 1.0 / count`` that ``numpy.ma.mean`` does. The sums are
added by :func:`dials_mdxbg.native.bin_kernels.bin_block` (C, or its numpy twin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dials_mdxbg.binning.grid import BinGrid
from dials_mdxbg.binning.histogram import ValueHistogram
from dials_mdxbg.native.bin_kernels import bin_block


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
    bin_block(block, f_bins, y_bins, grid.x_edges, valid_range, sums, keep)


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
