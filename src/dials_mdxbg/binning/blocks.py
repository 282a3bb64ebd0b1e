"""Blocks of counts (arrays, or frames that mask themselves) -> bin sums -> map.

Both inputs feed the same block accumulator (:mod:`dials_mdxbg.binning.sums`),
so binning a file written by dials.mdx_import and binning the frames
directly give the same map to the last bit.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dials_mdxbg.binning.grid import BinGrid, axis_bin_means
from dials_mdxbg.binning.histogram import ValueHistogram, histogram_cap, sampled_frames
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.binning.quality import dispersion
from dials_mdxbg.binning.sums import BinSums, accumulate_block, finalize
from dials_mdxbg.model import BinnedMap, BlockTask, SeriesAxes, as_block


def _reduce(
    tasks: Iterable[BlockTask],
    grid: BinGrid,
    consume: Callable[[BinSums, int, int, np.ndarray], None],
    nproc: int,
) -> BinSums:
    """Run ``consume`` over all blocks in ``nproc`` threads and merge the sums.

    Each thread owns an accumulator; integer sums make the merge order
    irrelevant, so the result is identical for any nproc. At most 2*nproc
    blocks are in flight, which bounds memory.
    """
    return run_blocks(tasks, consume, lambda: BinSums.zeros(grid.out_shape), nproc)


def run_blocks(tasks: Iterable[BlockTask], consume: Callable, zeros: Callable, nproc: int):
    """Run ``consume(acc, frame0, row0, block)`` over all blocks in ``nproc`` threads.

    Each thread owns an accumulator made by ``zeros()``; they are merged with
    ``acc.merge(other)`` at the end. At most 2*nproc blocks are in flight.
    """
    if nproc <= 1:
        acc = zeros()
        for frame0, row0, load in tasks:
            consume(acc, frame0, row0, load())
        return acc
    local = threading.local()
    accs: list = []
    lock = threading.Lock()

    def work(task: BlockTask) -> None:
        acc = getattr(local, "acc", None)
        if acc is None:
            acc = local.acc = zeros()
            with lock:
                accs.append(acc)
        frame0, row0, load = task
        consume(acc, frame0, row0, load())

    with ThreadPoolExecutor(nproc) as pool:
        inflight: deque = deque()
        for task in tasks:
            inflight.append(pool.submit(work, task))
            while len(inflight) >= 2 * nproc:
                inflight.popleft().result()
        for future in inflight:
            future.result()
    total = accs[0]
    for other in accs[1:]:
        total.merge(other)
    return total


def _expand(per_bin: np.ndarray, grid: BinGrid, frame0: int, row0: int, shape) -> np.ndarray:
    """Per-bin values (nphi, nby, nbx) broadcast to the pixels of a block."""
    n, rows, nx = shape
    f_bins = grid.phi_index[frame0 : frame0 + n]
    y_bins = grid.y_index[row0 : row0 + rows]
    x_bins = np.repeat(np.arange(len(grid.x_sizes)), grid.x_sizes)
    return per_bin[f_bins][:, y_bins][:, :, x_bins]


def clip_threshold(sums: BinSums, n_sigma: float) -> np.ndarray:
    """Per-bin count above which the clipped mean rejects a pixel."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.total / sums.count
    # Poisson sigma of a count; floor at 1 so near-empty bins still clip.
    threshold = mean + n_sigma * np.sqrt(np.maximum(mean, 1.0))
    threshold[~np.isfinite(threshold)] = np.inf
    return threshold


def block_sums(
    tasks: Iterable[BlockTask],
    grid: BinGrid,
    valid_range: tuple[int, int] | None = None,
    excluded: Callable[[int, int, tuple], np.ndarray] | None = None,
    threshold: np.ndarray | None = None,
    nproc: int = 1,
    histogram: bool = False,
) -> BinSums:
    """Exact bin sums of the blocks (those above ``threshold`` left out, if given).

    ``histogram``: also count the pixel values of the sampled frames
    (:func:`~dials_mdxbg.binning.histogram.sampled_frames`) into ``values``.
    """
    sample = sampled_frames(grid.shape[0]) if histogram else np.zeros(0, dtype=np.int64)
    cap = histogram_cap(valid_range)

    def count_values(acc: BinSums, frame0: int, block: np.ndarray, ex) -> None:
        lo, hi = np.searchsorted(sample, [frame0, frame0 + block.shape[0]])
        for k in sample[lo:hi] - frame0:
            if acc.values is None:
                acc.values = ValueHistogram.zeros(cap)
            acc.values.add(block[k], None if ex is None else ex[k])

    def consume(acc: BinSums, frame0: int, row0: int, block) -> None:
        if not isinstance(block, np.ndarray):
            # A frame straight from the detector: mask and bin in one pass; a
            # sampled frame's values are counted in that pass (a whole decoded
            # 16M frame would be 72 MB more, and a second pass).
            if excluded is None and threshold is None:
                values = None
                if frame0 in sample:
                    if acc.values is None:
                        acc.values = ValueHistogram.zeros(cap)
                    values = acc.values.counts
                block.bin_into(acc, grid, frame0, valid_range, values=values)
                return
            block = as_block(block)
        ex = excluded(frame0, row0, block.shape) if excluded else None
        if len(sample):
            count_values(acc, frame0, block, ex)
        keep = None
        if threshold is not None:
            keep = block <= _expand(threshold, grid, frame0, row0, block.shape)
        accumulate_block(acc, grid, block, frame0, row0, valid_range, ex, keep)

    return _reduce(tasks, grid, consume, nproc)


def bin_map(
    sums_for: Callable[[np.ndarray | None], BinSums], axes: SeriesAxes, options: BinOptions
) -> BinnedMap:
    """The binned map from a source of sums.

    Args:
        sums_for: ``threshold -> BinSums`` over the whole series; called once
            (mean) or twice (clipped mean, the second time with the per-bin
            threshold). Local threads and dask tasks both fit behind it.
        axes: the series axes.
        options: bins, valid_range (already applied by ``sums_for``), estimator.
    """
    sums = sums_for(None)
    values = sums.values  # the first pass sees every value
    if options.estimator == "clipped_mean":
        sums = sums_for(clip_threshold(sums, options.n_sigma))
    return map_from_sums(sums, axes, options.bins, options.estimator, values)


def map_from_sums(
    sums: BinSums, axes: SeriesAxes, bins, estimator: str = "mean", values=None
) -> BinnedMap:
    """The map (mdx2's numbers) and its dispersion from the exact sums of ``bins``.

    ``values``: the sampled frames' value histogram to attach, if any.
    """
    grid = BinGrid(axes.shape, bins)
    signal, errors, count = finalize(sums, grid, axes.exposure_times)
    return BinnedMap(
        phi=axis_bin_means(axes.phi, bins[0]),
        iy=axis_bin_means(axes.iy, bins[1]),
        ix=axis_bin_means(axes.ix, bins[2]),
        signal=signal,
        errors=errors,
        count=count,
        estimator=estimator,
        ny_nx=axes.shape[1:],
        n_frames=axes.shape[0],
        bins=tuple(bins),
        dispersion=dispersion(sums),
        values=values,
    )


def bin_blocks(
    make_tasks: Callable[[], Iterator[BlockTask]],
    axes: SeriesAxes,
    options: BinOptions,
    excluded: Callable[[int, int, tuple], np.ndarray] | None = None,
    nproc: int = 1,
) -> BinnedMap:
    """Bin a series given as blocks, in this process (``nproc`` threads).

    Args:
        make_tasks: returns a fresh iterator of block tasks covering the series
            once (called twice for the clipped mean).
        axes: the series axes.
        options: bins, valid_range, estimator; ``histogram``: also histogram
            the pixel values of sampled frames (the map's ``values``).
        excluded: optional ``(frame0, row0, shape) -> bool array`` (True = excluded).
        nproc: threads.
    """
    grid = BinGrid(axes.shape, options.bins)

    def sums_for(threshold):
        first = threshold is None
        return block_sums(
            make_tasks(),
            grid,
            options.valid_range,
            excluded,
            threshold,
            nproc,
            options.histogram and first,
        )

    return bin_map(sums_for, axes, options)
