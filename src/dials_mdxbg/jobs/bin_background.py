"""The binning job: image series or frames -> background map (``dials.mdx_bin_background``).

:func:`bin_background` computes a :class:`~dials_mdxbg.model.BinnedMap` from
one :class:`BinSource`, in this process (``nproc`` threads) or as frame-range
tasks on a dask cluster; integer sums make both give the same map to the last
bit, whatever the partition. :func:`make_background` is the whole command:
inputs checked, one map per imageset, files, log and summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dials_mdxbg.binning.blocks import bin_blocks, bin_map, block_sums, frame_tasks, series_tasks
from dials_mdxbg.binning.grid import BinGrid
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.binning.sums import BinSums
from dials_mdxbg.errors import InputError
from dials_mdxbg.frames.source import (
    frame_source,
    frame_source_from_json,
    selections,
    with_imageset,
)
from dials_mdxbg.jobs.engine import run_tasks, task_engine
from dials_mdxbg.jobs.partition import task_ranges
from dials_mdxbg.model import BinnedMap, SeriesAxes
from dials_mdxbg.output.binned import write_binned
from dials_mdxbg.series.mdx2_mask import mdx2_mask_excluder, read_mdx2_mask
from dials_mdxbg.series.reader import ImageSeriesReader
from dials_mdxbg.util.atomic import check_writable
from dials_mdxbg.util.progress import Progress
from dials_mdxbg.util.versions import provenance_of, versions

logger = logging.getLogger("dials.mdxbg.background")


@dataclass
class OpenedSource:
    """An opened :class:`BinSource`: the axes and how to walk its blocks.

    Attributes:
        axes: the series axes.
        tasks_for: ``(frame_range=None, progress=None) -> make_tasks``, where
            ``make_tasks()`` returns a fresh iterator of block tasks.
        excluded: ``(frame0, row0, shape) -> bool array`` of pixels excluded by
            an mdx2 mask, or None.
        block_frames: frames per block (tasks are cut on multiples of it).
    """

    axes: SeriesAxes
    tasks_for: Callable
    excluded: Callable | None
    block_frames: int


@dataclass
class BinSource:
    """Where a binning job reads its counts: picklable, so a dask worker can open it.

    Either ``series`` (an image series file, with an optional mdx2 ``mask``) or
    ``experiments`` (experiment list JSON) with ``selection`` (keyword
    arguments of :func:`dials_mdxbg.frames.source.frame_source`).
    """

    series: str | None = None
    mask: str | None = None
    experiments: str | None = None
    selection: dict | None = None

    @classmethod
    def from_series(cls, path: str | Path, mask: str | Path | None = None) -> BinSource:
        """An image series file (absolute paths, so that dask workers find it)."""
        return cls(
            series=str(Path(path).resolve()), mask=str(Path(mask).resolve()) if mask else None
        )

    @classmethod
    def from_experiments(cls, experiments, selection: dict | None = None) -> BinSource:
        """Frames of an ``ExperimentList`` (``selection``: frame_source keyword arguments)."""
        return cls(
            experiments=json.dumps(experiments.to_dict(), default=str),
            selection=dict(selection or {}),
        )

    @contextlib.contextmanager
    def open(self) -> Iterator[OpenedSource]:
        """Open the file or the experiments for reading."""
        if self.series:
            with ImageSeriesReader(self.series) as reader:
                excluded = None
                if self.mask:
                    excluded = mdx2_mask_excluder(read_mdx2_mask(self.mask, reader.shape))

                def tasks_for(frame_range=None, progress=None):
                    return series_tasks(reader, progress, frame_range)

                yield OpenedSource(reader.axes, tasks_for, excluded, reader.block_frames)
        else:
            source = frame_source_from_json(self.experiments, self.selection)

            def tasks_for(frame_range=None, progress=None):
                return frame_tasks(source, progress, frame_range)

            yield OpenedSource(source.axes, tasks_for, None, 1)


def range_sums(
    src: BinSource,
    options: BinOptions,
    frame_range: tuple[int, int],
    threshold: np.ndarray | None,
) -> BinSums:
    """One dask task: exact bin sums of frames [a, b) (zero elsewhere)."""
    with src.open() as opened:
        grid = BinGrid(opened.axes.shape, options.bins)
        tasks = opened.tasks_for(frame_range)()
        histogram = options.histogram and threshold is None
        return block_sums(
            tasks, grid, options.valid_range, opened.excluded, threshold, histogram=histogram
        )


def bin_background(
    src: BinSource,
    options: BinOptions,
    nproc: int = 1,
    engine=None,
    frames_per_task: int | None = None,
) -> BinnedMap:
    """Bin ``src`` into a background map, here (``nproc`` threads) or on a dask engine.

    Args:
        src: the image series or frames.
        options: bins, valid_range, estimator.
        nproc: threads in this process (ignored with an engine).
        engine: a :class:`dials_mdxbg.jobs.engine.DaskEngine`, or None.
        frames_per_task: dask task size (default: a few tasks per worker).

    Returns:
        The map, identical to ``mdx2.bin_image_series`` for ``estimator="mean"``.

    Example::

        from dials_mdxbg.binning.phil import BinOptions
        from dials_mdxbg.jobs.bin_background import BinSource, bin_background

        binned = bin_background(
            BinSource.from_series("bkg_data.nxs"), BinOptions((10, 20, 20), (0, 200))
        )
        print(binned.signal.shape, binned.empty_bins)
    """
    with src.open() as opened:
        axes = opened.axes
        n = axes.shape[0]
        if engine is None:
            make_tasks = opened.tasks_for(None, Progress(n, "frames"))
            return bin_blocks(make_tasks, axes, options, opened.excluded, nproc)

        grid = BinGrid(axes.shape, options.bins)
        workers = engine.n_workers
        ranges = task_ranges(
            n, workers, engine.tasks_per_worker, opened.block_frames, frames_per_task
        )
        logger.info(
            "Binning %d frames as %d tasks on %d %s workers", n, len(ranges), workers, engine.name
        )

        def sums_for(threshold):
            arguments = [(src, options, r, threshold) for r in ranges]
            results = run_tasks(engine, range_sums, arguments, "frame ranges")
            total = BinSums.zeros(grid.out_shape)
            for part in results:
                total.merge(part)
            return total

        return bin_map(sums_for, axes, options)


@dataclass
class BackgroundSummary:
    """What :func:`make_background` did: one entry per map written."""

    runs: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The JSON summary: one run's dict, or ``{"imagesets": [...]}`` for several."""
        return dict(self.runs[0]) if len(self.runs) == 1 else {"imagesets": list(self.runs)}


def log_table(binned: BinnedMap) -> None:
    """Per phi bin: mean, min, max (counts/s) and fraction of empty bins."""
    logger.info("Background map %s (phi, y, x bins), counts/s:", binned.signal.shape)
    logger.info("  %8s %10s %10s %10s %8s", "phi", "mean", "min", "max", "empty")
    for row in binned.phi_table():
        logger.info(
            "  %8.2f %10.3f %10.3f %10.3f %7.1f%%",
            row["phi"],
            row["mean"],
            row["min"],
            row["max"],
            100 * row["empty_fraction"],
        )


def make_background(
    series: str | None, experiments, params, phil_text: str | None = None
) -> BackgroundSummary:
    """The whole ``dials.mdx_bin_background`` job: maps, PNGs, log, summary.

    Args:
        series: an image series file, or None for the one-step path.
        experiments: an ``ExperimentList`` for the one-step path (else None/empty).
        params: the extracted PHIL of :mod:`dials_mdxbg.command_line.mdx_bin_background`.
        phil_text: the effective PHIL to store as provenance, if any.

    Raises:
        InputError: bad input, with a one-line reason (nothing is written).
    """
    options = BinOptions.from_params(params)
    mdx2_mask = params.input.mdx2_mask
    if experiments and mdx2_mask:
        raise InputError(
            "input.mdx2_mask= (mask=) is an mdx2 mask for image series input; for experiments "
            "use frames.mask= (a dials.generate_mask mask)"
        )
    if series:
        _refuse_frame_selection(params.frames, series)
        jobs = [(BinSource.from_series(series, mdx2_mask), None, str(series), None)]
    else:
        jobs = []
        for selection, index in selections(experiments, params.frames):
            # Validate here, before any work, with the one-line errors.
            source = frame_source(experiments, **selection)
            logger.info(
                "%s: %d frames; statically masked pixels per frame: %s",
                source.description,
                source.n_frames,
                source.masked_static,
            )
            src = BinSource.from_experiments(experiments, selection)
            jobs.append((src, index, source.description, source.masked_static))
    summary = BackgroundSummary()
    with contextlib.ExitStack() as stack:
        engine = stack.enter_context(task_engine(params.mp))
        for src, index, described, masked_static in jobs:
            summary.runs.append(
                _bin_and_write(
                    src, index, described, masked_static, params, options, engine, phil_text
                )
            )
    return summary


def _refuse_frame_selection(frames, series) -> None:
    """``frames.*`` select and mask experiments' frames; with a series they cannot apply.

    Refused rather than ignored (mdx2 would ignore them): a map binned from
    other frames or pixels than asked would be silently wrong.
    """
    given = {
        "image_range": frames.image_range is not None,
        "mask": bool(frames.mask),
        "imageset": frames.imageset is not None,
        "all_imagesets": bool(frames.all_imagesets),
        "goniometer_shadow": bool(frames.goniometer_shadow),
    }
    for name, set_ in given.items():
        if set_:
            raise InputError(
                f"frames.{name}= applies to experiments (the one-step path), not to the image "
                f"series {series}; drop it, or bin the experiments instead"
            )


def html_path_for(html, binned_path: Path, index: int | None = None) -> Path | None:
    """output.html: Auto = beside the map (its name, ``.html``), None = no report."""
    import libtbx

    if html is libtbx.Auto:
        return Path(binned_path).with_suffix(".html")  # the map's name has the imageset
    return with_imageset(html, index)


def _bin_and_write(
    src, index, described, masked_static, params, options, engine, phil_text
) -> dict:
    """Bin one input and write its map, PNG and report (``index`` names them for imagesets)."""
    binned_path = with_imageset(params.output.binned, index)
    plot_path = with_imageset(params.output.plot, index)
    html_path = html_path_for(params.output.html, binned_path, index)
    for path in (binned_path, plot_path, html_path):
        if path:
            check_writable(path)
    if html_path is not None:
        from dials_mdxbg.output.report import missing_dependencies

        missing = missing_dependencies()
        if missing:
            raise InputError(
                f"output.html needs {' and '.join(missing)} (they come with DIALS): install "
                "them, or set output.html=None"
            )
        options = dataclasses.replace(options, histogram=True)
    kind = "image_series" if src.series else "experiments"
    logger.info("Binning %s (%s) with bins %s", described, kind, options.bins)
    t0 = time.perf_counter()
    binned = bin_background(src, options, params.mp.nproc, engine, params.mp.dask.frames_per_task)
    seconds = round(time.perf_counter() - t0, 3)
    n_frames = binned.n_frames

    empty = binned.empty_bins
    if empty == binned.count.size:
        logger.warning("Warning: every pixel is masked or outside valid_range; the map is all NaN")
    elif empty:
        logger.info("%d of %d bins have no valid pixel (NaN)", empty, binned.count.size)
    used = int(binned.count.sum())
    pixels = n_frames * int(binned.ny_nx[0]) * int(binned.ny_nx[1])
    logger.info(
        "%d frames: %d of %d pixel values used (%.2f%%); the rest are masked (-1), "
        "outside valid_range or in the mask",
        n_frames,
        used,
        pixels,
        100.0 * used / pixels,
    )
    input_info = {
        "input": described,
        "input_kind": kind,
        "frames": n_frames,
        "pixel_values_used": used,
        "pixel_values_total": pixels,
    }
    if index is not None:
        input_info["imageset"] = index
    provenance = provenance_of("dials.mdx_bin_background", phil_text, input=input_info)
    write_binned(
        binned_path,
        (binned.phi, binned.iy, binned.ix),
        binned.signal,
        binned.extra_datasets(),
        provenance,
    )
    logger.info("Wrote %s", binned_path)
    log_table(binned)
    if plot_path:
        from dials_mdxbg.output.plot import plot_map

        plot_map(
            plot_path,
            binned.phi,
            binned.iy,
            binned.ix,
            binned.signal,
            title=f"{binned_path}: bins {options.bins}, valid_range {options.valid_range}",
        )
        logger.info("Preview written to %s", plot_path)
    if html_path:
        t1 = time.perf_counter()
        write_report(
            html_path, binned, options, input_info, masked_static, binned_path, phil_text
        )
        logger.info("Report written to %s (%.1f s)", html_path, time.perf_counter() - t1)
    summary = dict(input_info)
    summary.update(
        {
            "output": str(binned_path),
            "plot": str(plot_path) if plot_path else None,
            "html": str(html_path) if html_path else None,
            "bins": list(options.bins),
            "valid_range": list(options.valid_range) if options.valid_range else None,
            "estimator": binned.estimator,
            "map_shape": list(binned.signal.shape),
            "empty_bins": empty,
            "per_phi_bin": binned.phi_table(),
            "seconds": seconds,
        }
    )
    return summary


def write_report(
    path: Path,
    binned: BinnedMap,
    options: BinOptions,
    input_info: dict,
    masked_static: dict | None,
    binned_path: Path,
    phil_text: str | None,
    sections: dict | None = None,
) -> Path:
    """Render the HTML report of one map and write it atomically.

    Masked pixels are per frame: the static reasons the frame source knows
    (one-step path), and the rest as seen in the histogram's sampled frames
    (trusted range, shadow; for an image series every -1, and the mdx2 mask).
    """
    from dials_mdxbg.output.report import render_report
    from dials_mdxbg.util.atomic import write_text

    ny, nx = (int(v) for v in binned.ny_nx)
    values = binned.values
    masked = dict(masked_static or {})
    if values is not None and values.pixels:
        per_frame = values.masked * (ny * nx) / values.pixels
        if masked_static is None:
            masked["masked in the image series (-1) or by the mdx2 mask"] = round(per_frame)
        else:
            dynamic = per_frame - sum(masked_static.values())
            masked["trusted range or shadow (sampled frames)"] = max(round(dynamic), 0)
    summary = {
        "input": f"{input_info['input']} ({input_info['input_kind']})",
        "frames": binned.n_frames,
        "image_size": (ny, nx),
        "bins": options.bins,
        "map_shape": binned.signal.shape,
        "valid_range": options.valid_range or "none",
        "estimator": binned.estimator,
        "empty_bins": f"{binned.empty_bins:,} of {binned.count.size:,}",
        "output": str(binned_path),
        "versions": versions(),
        "phil": phil_text,
        "masked": masked,
        "detector_pixels": ny * nx,
        "per_phi": binned.phi_table(),
    }
    histogram = values.as_report(options.valid_range, binned.n_frames) if values else None
    text = render_report(
        binned.phi,
        binned.iy,
        binned.ix,
        binned.signal,
        binned.errors,
        binned.count,
        summary,
        histogram,
        sections,
        title=f"Background map {Path(binned_path).name}",
    )
    return write_text(Path(path), text)
