"""bins=auto: every candidate binned and scored, the best chosen; on block tasks, not files.

The series comes as an *opened source*: anything with ``axes``
(:class:`~dials_mdxbg.model.SeriesAxes`), ``tasks_for(frame_range=None,
progress=None)`` returning a ``make_tasks()`` of block tasks
(:data:`~dials_mdxbg.model.BlockTask`), ``excluded`` (the mdx2 mask's
``(frame0, row0, shape) -> bool array``, or None) and ``block_frames``
(frames per stored chunk). The jobs layer opens files or frames as such.

Candidates are binned together on a fine grid (:mod:`dials_mdxbg.binning.auto`)
and streamed (:mod:`dials_mdxbg.binning.stream`): the chosen map is rebuilt
from its exact sums, identical to ``bins=<chosen>`` by hand.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np

from dials_mdxbg.binning.auto import MultiBinner, candidate_bins, within_memory
from dials_mdxbg.binning.blocks import map_from_sums, run_blocks
from dials_mdxbg.binning.choice import one_se_choice, smoothness
from dials_mdxbg.binning.fill import fill_empty, fill_map
from dials_mdxbg.binning.gain import choose_gain
from dials_mdxbg.binning.grid import axis_bin_means
from dials_mdxbg.binning.heldout import ScoreSums, consume_for, summarize
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.binning.score import corrected_score
from dials_mdxbg.binning.stencil import CellGrid
from dials_mdxbg.binning.stream import CandidateStream
from dials_mdxbg.errors import InputError
from dials_mdxbg.model import BinnedMap
from dials_mdxbg.util.progress import Progress

logger = logging.getLogger("dials.mdxbg.background")

AUTO_WINDOW_FRAMES = 4
"""Frames binned at a time by bins=auto (rounded up to whole file chunks): memory holds
every candidate's phi bins overlapping one window, per thread."""


def auto_candidates(
    shape: tuple[int, int, int], options: BinOptions, how: str = "", nproc: int = 1
) -> list[tuple]:
    """The candidates of ``options`` for a sweep of ``shape`` (logged): those with two phi
    bins, and the pixel sizes that fit ``auto.max_memory_mb``."""
    candidates = candidate_bins(shape[0], options.auto_frames, options.auto_pixels)
    candidates, dropped = within_memory(
        shape[1:], candidates, AUTO_WINDOW_FRAMES, nproc, options.auto_memory_mb
    )
    if dropped:
        logger.info(
            "bins=auto: pixel sizes %s left out (they need more than auto.max_memory_mb=%d "
            "on %d x %d pixels)",
            dropped,
            options.auto_memory_mb,
            *shape[1:],
        )
    logger.info(
        "bins=auto: %d candidates (frames %s x pixels %s)%s",
        len(candidates),
        sorted({c[0] for c in candidates}),
        sorted({c[1] for c in candidates}),
        how,
    )
    return candidates


def score_pass(opened, scorers, options: BinOptions, nproc: int) -> ScoreSums:
    """The second pass: every frame predicted by the other parity's map of each scorer."""
    n = opened.axes.shape[0]
    make_tasks = opened.tasks_for(None, Progress(n, "frames (held-out error)"))
    consume = consume_for(scorers, options.valid_range, opened.excluded)
    return run_blocks(make_tasks(), consume, lambda: ScoreSums(scorers), nproc)


def bin_auto(opened, options: BinOptions, nproc: int, rebin: Callable) -> BinnedMap:
    """bins=auto in bounded memory: frames binned and scored in windows (binning.stream).

    Two reads of every frame (binning, then scoring a few frames behind); the
    chosen map comes from its exact sums, kept in a temporary file. The
    candidates are filled (fill_empty) as they are scored, and so is the map.

    Args:
        opened: the series as block tasks (see the module docstring).
        options: the binning options (``auto``: the candidates' lists).
        nproc: threads.
        rebin: ``bins -> BinnedMap`` with diagnostics, for an estimator other
            than the mean (which needs its own threshold pass).
    """
    options = dataclasses.replace(options, fill_empty=True)
    axes = opened.axes
    n, ny, nx = axes.shape
    candidates = auto_candidates(axes.shape, options, ", streamed in windows of frames", nproc)
    binner = MultiBinner(axes.shape, candidates)
    cells: dict = {}
    streams = []
    for grid in binner.grids:
        p = grid.bins[1]
        if p not in cells:
            cells[p] = CellGrid.make(ny, nx, axis_bin_means(axes.iy, p), axis_bin_means(axes.ix, p))
        streams.append(
            CandidateStream(grid, axes, cells[p], fill_empty, options.dispersion_threshold)
        )
    # Windows of whole file chunks (a chunk is decoded once per read).
    step = max(opened.block_frames, 1)
    window = step * max(1, -(-AUTO_WINDOW_FRAMES // step))
    progress = Progress(n, "frames (all candidates, binned and scored)")

    def consume(acc, frame0, row0, block):
        binner.consume(acc, frame0, row0, block, options.valid_range, opened.excluded)

    def score(a: int, b: int) -> None:
        tasks = opened.tasks_for((a, b))()
        consume_scores = consume_for(streams, options.valid_range, opened.excluded)
        part = run_blocks(tasks, consume_scores, lambda: ScoreSums(streams), nproc)
        for s, item in zip(streams, part.items):
            s.acc.heldout += item.heldout
            s.acc.nan_full += item.nan_full
            s.acc.per_frame += item.per_frame
        for s in streams:
            s.drop(b)
        progress.update(b)

    try:
        scored = 0
        for a in range(0, n, window):
            b = min(a + window, n)
            sums = run_blocks(
                opened.tasks_for((a, b))(), consume, lambda a=a, b=b: binner.zeros((a, b)), nproc
            )
            for s, k0, part in zip(streams, sums.k0, sums.sums):
                s.add_window(k0, part, b)
            del sums
            ready = scored
            while ready < n and all(s.ready(ready) for s in streams):
                ready += 1
            if ready > scored:
                score(scored, ready)
                scored = ready
        if scored < n:
            score(scored, n)
        facts, summaries = [], []
        for s in streams:
            if s.empty_bins == s.n_bins * int(np.prod(s.plane_shape)):
                raise InputError(
                    f"bins=auto: every bin of candidate {','.join(map(str, s.bins))} is empty "
                    "(no valid pixel: check valid_range and the mask)"
                )
            facts.append((s.full_phi, s.empty_bins, s.dispersion_figures()))
            summaries.append(summarize(s.acc, s.full_phi))
        frames = [s.acc.per_frame for s in streams]
        best, auto = choose_and_tabulate(candidates, facts, summaries, frames, axes, options)
        best_sums = streams[best].sums()
    finally:
        for s in streams:
            s.close()
    return auto_result(opened, options, best_sums, summaries[best], auto, rebin)


def choose_and_tabulate(candidates, facts, summaries, frames, axes, options: BinOptions):
    """The gain, every candidate's corrected score, the one-SE choice and the table.

    Args:
        candidates: their bins.
        facts: per candidate (phi centres, empty bins, dispersion figures).
        summaries: per candidate :func:`~dials_mdxbg.binning.heldout.summarize`.
        frames: per candidate its per-frame score sums.
        axes: the series axes (exposure times).
        options: ``gain``, ``photon_counter``.

    Returns:
        (index of the chosen candidate, the ``quality["auto"]`` dict).
    """
    smallest = min(range(len(candidates)), key=lambda i: smoothness(candidates[i]))
    values = int(np.prod(candidates[smallest]))
    gain, gain_how = choose_gain(
        options.gain, options.photon_counter, facts[smallest][2]["median"], values
    )
    logger.info("bins=auto: detector gain %.3g (%s)", gain, gain_how)
    times = axes.exposure_times
    scores = [corrected_score(f, times, gain) for f in frames]
    choice = one_se_choice(candidates, frames, [s["score"] for s in scores], times, gain)
    auto = {
        "chosen": list(candidates[choice.index]),
        "how": choice.how,
        "distinguishable": choice.distinguishable,
        "best": list(candidates[choice.best]),
        "gain": gain,
        "gain_how": gain_how,
        "candidates": auto_table(candidates, facts, summaries, scores, choice),
    }
    return choice.index, auto


def auto_result(opened, options: BinOptions, sums, quality, auto: dict, rebin) -> BinnedMap:
    """The chosen candidate's map from its exact sums (filled), with the bins=auto table."""
    bins = tuple(auto["chosen"])
    chosen = fill_map(map_from_sums(sums, opened.axes, bins), options)
    if options.estimator != "mean":
        # The clipped mean needs its own threshold pass: bin the chosen size as by hand.
        logger.info("bins=auto chose %s; binning it again with %s", bins, options.estimator)
        chosen = fill_map(rebin(bins), options)
        quality = chosen.quality
    chosen.quality = {**quality, "auto": auto}
    return chosen


def auto_table(candidates, facts, summaries, scores, choice) -> list[dict]:
    """The bins=auto table: one row per candidate (contract: docs/quality.md)."""
    table = []
    for i, (cand, (_, empty, disp), s) in enumerate(zip(candidates, facts, summaries)):
        diff, diff_se = choice.difference[i]
        table.append(
            {
                "bins": list(cand),
                "chosen": i == choice.index,
                "score": scores[i]["score"],
                "score_se": scores[i]["score_se"],
                "score_percent": scores[i]["score_percent"],
                "difference": diff,
                "difference_se": diff_se,
                "within_one_se": choice.within[i],
                "empty_bins": empty,
                "filled_bins": empty,
                "nan_pixels": s["nan_pixels"],
                "model_error_percent": s["heldout"].get("model_error_percent"),
                "model_error_sq": s["heldout"].get("model_error_sq"),
                "model_error_sq_se": s["heldout"].get("model_error_sq_se"),
                "dispersion_median": disp["median"],
                "dispersion_p95": disp["p95"],
                "dispersion_fraction_above": disp["fraction_above"],
            }
        )
    return table
