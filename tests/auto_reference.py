"""Test-only reference of bins=auto: every candidate's sums held for the whole sweep."""

from __future__ import annotations

import dataclasses

import numpy as np

from dials_mdxbg.binning import search
from dials_mdxbg.binning.auto import MultiBinner
from dials_mdxbg.binning.blocks import map_from_sums, run_blocks
from dials_mdxbg.binning.fill import fill_empty, fill_map
from dials_mdxbg.binning.heldout import make_scorer, summarize
from dials_mdxbg.binning.parity import merge_parities
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.binning.quality import dispersion_summary
from dials_mdxbg.binning.sums import BinSums
from dials_mdxbg.model import BinnedMap
from dials_mdxbg.util.progress import Progress


def bin_auto_in_memory(opened, options: BinOptions, nproc: int, rebin=None) -> BinnedMap:
    """bins=auto holding every candidate's sums for the whole sweep (the reference of
    :func:`dials_mdxbg.binning.search.bin_auto`, which streams; tests compare them)."""
    options = dataclasses.replace(options, fill_empty=True)  # as bins=auto: filled
    axes = opened.axes
    n = axes.shape[0]
    candidates = search.auto_candidates(axes.shape, options, nproc=nproc)
    binner = MultiBinner(axes.shape, candidates)
    make_tasks = opened.tasks_for(None, Progress(n, "frames (all candidates)"))

    def consume(acc, frame0, row0, block):
        binner.consume(acc, frame0, row0, block, options.valid_range, opened.excluded)

    multi = run_blocks(make_tasks(), consume, binner.zeros, nproc)
    # Keep per candidate only its exact plain sums (the chosen map is rebuilt from
    # them, identical to bins=<chosen> by hand), its scorer and its summary figures.
    kept, scorers, facts, cache = [], [], [], {}
    fill = fill_empty
    for cand in candidates:
        sums = multi.sums.pop(0)
        plain = merge_parities(sums)
        binned = fill_map(map_from_sums(plain, axes, cand), options)
        disp = dispersion_summary(
            binned.dispersion, (binned.phi, binned.iy, binned.ix), options.dispersion_threshold
        )
        facts.append((binned.phi, binned.empty_bins, disp))
        scorers.append(make_scorer(cand, axes, binned.signal, sums, fill, cache, variance=True))
        kept.append(BinSums(plain.total, plain.count.astype(np.int32), plain.total_sq))
        del sums, plain, binned
    scores = search.score_pass(opened, scorers, options, nproc)
    summaries = [summarize(item, f[0]) for item, f in zip(scores.items, facts)]
    del scorers
    frames = [item.per_frame for item in scores.items]
    best, auto = search.choose_and_tabulate(candidates, facts, summaries, frames, axes, options)
    best_sums = kept[best]
    del kept
    best_sums.count = best_sums.count.astype(np.int64)
    return search.auto_result(opened, options, best_sums, summaries[best], auto, rebin)
