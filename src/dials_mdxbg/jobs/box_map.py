"""mdx2's box map of an opened source: its sums (here or on dask) and its held-out error.

The pieces :func:`dials_mdxbg.jobs.bin_background.bin_background` is made of,
apart so that :mod:`dials_mdxbg.jobs.shared_pass` can run them on frames it
also hands to the shell model (one read for both).
"""

from __future__ import annotations

import logging

import numpy as np

from dials_mdxbg.binning.blocks import bin_map, block_sums
from dials_mdxbg.binning.fill import fill_empty
from dials_mdxbg.binning.fill import fill_map as _fill
from dials_mdxbg.binning.grid import BinGrid
from dials_mdxbg.binning.parity import ParityGrid, merge_parities
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.binning.sums import BinSums
from dials_mdxbg.jobs.engine import run_tasks
from dials_mdxbg.jobs.inputs import BinSource
from dials_mdxbg.jobs.partition import task_ranges
from dials_mdxbg.model import BinnedMap
from dials_mdxbg.util.progress import Progress

logger = logging.getLogger("dials.mdxbg.background")


def range_sums(
    src: BinSource,
    options: BinOptions,
    frame_range: tuple[int, int],
    threshold: np.ndarray | None,
) -> BinSums:
    """One dask task: exact bin sums of frames [a, b) (zero elsewhere)."""
    with src.open() as opened:
        grid_type = ParityGrid if options.diagnostics else BinGrid
        grid = grid_type(opened.axes.shape, options.bins)
        tasks = opened.tasks_for(frame_range)()
        histogram = options.histogram and threshold is None
        return block_sums(
            tasks, grid, options.valid_range, opened.excluded, threshold, histogram=histogram
        )


def box_map(
    opened, options: BinOptions, nproc: int, src=None, engine=None, frames_per_task=None
) -> tuple[BinnedMap, BinSums | None]:
    """The filled box map of ``opened`` (fixed bins) and, with diagnostics, its parity sums."""
    parity: list[BinSums] = []
    sums_for = sums_source(src, opened, options, nproc, engine, frames_per_task, parity)
    binned = _fill(bin_map(sums_for, opened.axes, options), options)
    return binned, (parity[-1] if parity else None)


def heldout(opened, options: BinOptions, binned: BinnedMap, parity: BinSums, nproc: int) -> dict:
    """The held-out error of a map from its parity sums (a second pass over the frames)."""
    from dials_mdxbg.binning.heldout import make_scorer, summarize
    from dials_mdxbg.binning.search import score_pass

    fill = fill_empty if options.fill_empty else None
    scorer = make_scorer(options.bins, opened.axes, binned.signal, parity, fill)
    return summarize(score_pass(opened, [scorer], options, nproc).items[0], binned.phi)


def sums_source(src, opened, options, nproc, engine, frames_per_task, parity: list):
    """``threshold -> BinSums`` of the whole series, here or on the engine.

    With diagnostics the frames are binned by parity (the even and odd maps
    come from the same pass, appended to ``parity``) and the plain sums are
    their exact sum; a clipping threshold is shared by both parities.
    """
    axes = opened.axes
    n = axes.shape[0]
    split = options.diagnostics
    grid = (ParityGrid if split else BinGrid)(axes.shape, options.bins)
    if engine is None:
        make_tasks = opened.tasks_for(None, Progress(n, "binning: frames"))

        def partial(threshold):
            histogram = options.histogram and threshold is None  # the first pass sees all
            return block_sums(
                make_tasks(),
                grid,
                options.valid_range,
                opened.excluded,
                threshold,
                nproc,
                histogram=histogram,
            )

    else:
        workers = engine.n_workers
        ranges = task_ranges(
            n, workers, engine.tasks_per_worker, opened.block_frames, frames_per_task
        )
        logger.info(
            "Binning %d frames as %d tasks on %d %s workers", n, len(ranges), workers, engine.name
        )

        def partial(threshold):
            arguments = [(src, options, r, threshold) for r in ranges]
            results = run_tasks(engine, range_sums, arguments, "frame ranges")
            total = BinSums.zeros(grid.out_shape)
            for part in results:
                total.merge(part)
            return total

    def sums_for(threshold):
        if not split:
            return partial(threshold)
        sums = partial(None if threshold is None else np.repeat(threshold, 2, axis=0))
        parity.append(sums)
        return merge_parities(sums)

    return sums_for
