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
import functools
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dials_mdxbg.binning.blocks import bin_map, block_sums
from dials_mdxbg.binning.fill import fill_empty
from dials_mdxbg.binning.fill import fill_map as _fill
from dials_mdxbg.binning.grid import BinGrid
from dials_mdxbg.binning.heldout import make_scorer, summarize
from dials_mdxbg.binning.parity import ParityGrid, merge_parities
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.binning.quality import dispersion_summary
from dials_mdxbg.binning.search import bin_auto
from dials_mdxbg.binning.search import score_pass as _score
from dials_mdxbg.binning.sums import BinSums
from dials_mdxbg.errors import InputError
from dials_mdxbg.frames.source import (
    FrameSource,
    frame_source,
    frame_source_from_json,
    frame_tasks,
    selections,
    with_imageset,
)
from dials_mdxbg.jobs.engine import run_tasks, task_engine
from dials_mdxbg.jobs.partition import task_ranges
from dials_mdxbg.model import BinnedMap, SeriesAxes
from dials_mdxbg.output.binned import write_binned
from dials_mdxbg.series.mdx2_mask import mdx2_mask_excluder, read_mdx2_mask
from dials_mdxbg.series.reader import ImageSeriesReader, series_tasks
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
    # The validated frames, when this process already built them: opening then
    # skips rebuilding the experiments from JSON and their masks (0.5-1 s on a
    # 16M sweep). Never pickled: a dask worker rebuilds them.
    frames: FrameSource | None = field(default=None, compare=False, repr=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["frames"] = None
        return state

    @classmethod
    def from_series(cls, path: str | Path, mask: str | Path | None = None) -> BinSource:
        """An image series file (absolute paths, so that dask workers find it)."""
        return cls(
            series=str(Path(path).resolve()), mask=str(Path(mask).resolve()) if mask else None
        )

    @classmethod
    def from_experiments(
        cls, experiments, selection: dict | None = None, frames: FrameSource | None = None
    ) -> BinSource:
        """Frames of an ``ExperimentList`` (``selection``: frame_source keyword arguments).

        ``frames``: the :func:`frame_source` of that selection, if already built here.
        """
        return cls(
            experiments=json.dumps(experiments.to_dict(), default=str),
            selection=dict(selection or {}),
            frames=frames,
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
            source = self.frames or frame_source_from_json(self.experiments, self.selection)

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
        grid_type = ParityGrid if options.diagnostics else BinGrid
        grid = grid_type(opened.axes.shape, options.bins)
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
from dials_mdxbg.binning.quality import dispersion_summary
from dials_mdxbg.binning.search import bin_auto
from dials_mdxbg.binning.search import score_pass as _score
        from dials_mdxbg.jobs.bin_background import BinSource, bin_background

        binned = bin_background(
            BinSource.from_series("bkg_data.nxs"), BinOptions((10, 20, 20), (0, 200))
        )
        print(binned.signal.shape, binned.empty_bins)
    """
    with src.open() as opened:
        if options.auto:
            if engine is not None:
                logger.info("bins=auto runs in this process (%d threads), not on dask", nproc)
            rebin = functools.partial(_bin_chosen, opened, options, nproc=nproc)
            return bin_auto(opened, options, nproc, rebin)
        parity: list[BinSums] = []
        sums_for = _sums_source(src, opened, options, nproc, engine, frames_per_task, parity)
        binned = bin_map(sums_for, opened.axes, options)
        binned = _fill(binned, options)
        if options.diagnostics:
            scorer = make_scorer(
                options.bins,
                opened.axes,
                binned.signal,
                parity[-1],
                fill_empty if options.fill_empty else None,
            )
            scores = _score(opened, [scorer], options, nproc)
            binned.quality = summarize(scores.items[0], binned.phi)
        return binned


def _sums_source(src, opened, options, nproc, engine, frames_per_task, parity: list):
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
        make_tasks = opened.tasks_for(None, Progress(n, "frames"))

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


def _bin_chosen(opened, options: BinOptions, bins, nproc: int) -> BinnedMap:
    from dataclasses import replace

    again = replace(options, bins=tuple(bins), diagnostics=True)
    parity: list[BinSums] = []
    sums_for = _sums_source(None, opened, again, nproc, None, None, parity)
    binned = _fill(bin_map(sums_for, opened.axes, again), again)
    scorer = make_scorer(
        again.bins, opened.axes, binned.signal, parity[-1], fill_empty if again.fill_empty else None
    )
    binned.quality = summarize(_score(opened, [scorer], again, nproc).items[0], binned.phi)
    return binned


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
    geometry_file = params.geometry
    if geometry_file:
        from dials_mdxbg.output.profile import geometry_from_file

        fixed = geometry_from_file(geometry_file)  # one-line error when unreadable
    if series:
        _refuse_frame_selection(params.frames, series)
        with ImageSeriesReader(Path(series)) as reader:
            shape = reader.shape
        if geometry_file:
            geometry = fixed
        else:
            from dials_mdxbg.output.profile import geometry_from_series

            geometry = geometry_from_series(Path(series))
        name = str(geometry_file) if geometry_file else f"{series} (its provenance)"
        _check_geometry(geometry, shape[1:], name)
        jobs = [(BinSource.from_series(series, mdx2_mask), None, str(series), None, geometry)]
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
            src = BinSource.from_experiments(experiments, selection, source)
            if geometry_file:
                geometry = fixed
                _check_geometry(geometry, source.frame_shape, str(geometry_file))
            else:
                iset = experiments.imagesets()[selection.get("imageset") or 0]
                geometry = (iset.get_detector(), iset.get_beam())
            jobs.append((src, index, source.description, source.masked_static, geometry))
    summary = BackgroundSummary()
    with contextlib.ExitStack() as stack:
        engine = stack.enter_context(task_engine(params.mp))
        for src, index, described, masked_static, geometry in jobs:
            summary.runs.append(
                _bin_and_write(
                    src, index, described, masked_static, params, options, engine, phil_text,
                    geometry,
                )  # fmt: skip
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


def _check_geometry(geometry, ny_nx, name: str) -> None:
    if geometry is not None:
        from dials_mdxbg.output.profile import check_geometry

        check_geometry(geometry[0], ny_nx, name)


def html_path_for(html, binned_path: Path, index: int | None = None) -> Path | None:
    """output.html: Auto = beside the map (its name, ``.html``), None = no report."""
    import libtbx

    if html is libtbx.Auto:
        return Path(binned_path).with_suffix(".html")  # the map's name has the imageset
    return with_imageset(html, index)


def _bin_and_write(
    src, index, described, masked_static, params, options, engine, phil_text, geometry=None
) -> dict:
    """Bin one input; write its map, PNGs and report (``index`` names them for imagesets)."""
    binned_path = with_imageset(params.output.binned, index)
    plot_path = with_imageset(params.output.plot, index)
    profile_path = with_imageset(params.output.profile, index)
    html_path = html_path_for(params.output.html, binned_path, index)
    for path in (binned_path, plot_path, profile_path, html_path):
        if path:
            check_writable(path)
    if profile_path and geometry is None:
        raise InputError(
            f"output.profile={profile_path} needs the geometry: {described} carries none "
            "(an mdx2 file?); give geometry=background.expt"
        )
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
    logger.info("Binning %s (%s) with bins %s", described, kind, options.bins or "auto")
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
    quality = report_quality(binned, options)
    profile = None
    if geometry is not None:
        from dials_mdxbg.output.profile import bin_two_theta, radial_profile

        detector, beam = geometry
        profile = radial_profile(
            binned.signal,
            binned.count,
            binned.phi,
            bin_two_theta(detector, beam, binned.iy, binned.ix),
            beam.get_wavelength(),
            params.profile.n_shells,
        )
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
            title=f"{binned_path}: bins {binned.bins}, valid_range {options.valid_range}",
        )
        logger.info("Preview written to %s", plot_path)
    if profile_path:
        from dials_mdxbg.output.profile import plot_profile

        plot_profile(profile_path, profile, f"{binned_path}: bins {binned.bins}")
        logger.info("Radial profile written to %s", profile_path)
    if html_path:
        t1 = time.perf_counter()
        write_report(
            html_path, binned, options, input_info, masked_static, binned_path, phil_text,
            report_sections(binned, quality, profile),
        )  # fmt: skip
        logger.info("Report written to %s (%.1f s)", html_path, time.perf_counter() - t1)
    summary = dict(input_info)
    summary.update(
        {
            "output": str(binned_path),
            "plot": str(plot_path) if plot_path else None,
            "profile": str(profile_path) if profile_path else None,
            "html": str(html_path) if html_path else None,
            "bins": list(binned.bins),
            "valid_range": list(options.valid_range) if options.valid_range else None,
            "estimator": binned.estimator,
            "map_shape": list(binned.signal.shape),
            "empty_bins": empty,
            "per_phi_bin": binned.phi_table(),
            "quality": quality,
            "radial_profile": profile,
            "seconds": seconds,
        }
    )
    return summary


def nan_pixel_bound(count: np.ndarray) -> int:
    """Upper bound of the valid pixel values that get a NaN background under mdx2.

    A pixel's interpolation stencil lies within one bin of its own bin on each
    axis, so only pixels of bins next to (or at) an empty bin can be poisoned.
    """
    empty = count == 0
    near = empty.copy()
    for axis in range(3):
        shifted = np.zeros_like(near)
        lead = [slice(None)] * 3
        src = list(lead)
        src[axis], lead[axis] = slice(1, None), slice(None, -1)
        shifted[tuple(lead)] = near[tuple(src)]
        shifted[tuple(src)] |= near[tuple(lead)]
        near |= shifted
    return int(count[near].sum())


def report_quality(binned: BinnedMap, options: BinOptions) -> dict:
    """Log the map's quality figures and return them for the JSON summary."""
    out: dict = dict(binned.quality)
    if binned.dispersion is not None:
        disp = dispersion_summary(
            binned.dispersion, (binned.phi, binned.iy, binned.ix), options.dispersion_threshold
        )
        out["dispersion"] = disp
        if disp["bins"]:
            logger.info(
                "Dispersion (variance/mean of the counts in a bin, ~1 for flat Poisson "
                "background): median %.3f, 95th percentile %.3f, %.2f%% of bins above %g",
                disp["median"],
                disp["p95"],
                100 * disp["fraction_above"],
                disp["threshold"],
            )
            logger.info("  worst bins (phi, iy, ix: dispersion):")
            for w in disp["worst"][:5]:
                logger.info(
                    "    %8.2f %8.1f %8.1f: %.2f", w["phi"], w["iy"], w["ix"], w["dispersion"]
                )
    if binned.phi.size < 2:
        logger.warning(
            "Warning: the map has a single phi bin (bins %s on %d frames): mdx2 cannot "
            "interpolate it (GridData.interpolate fails on an axis of size 1), so "
            "mdx2.correct --background will stop; use fewer frames per bin",
            binned.bins,
            binned.n_frames,
        )
        out["single_phi_bin"] = True
    empty = binned.empty_bins
    if binned.filled is not None:
        out["filled_bins"] = int(binned.filled.sum())
        if out["filled_bins"]:
            logger.info(
                "fill_empty: %d empty bins filled from their neighbours", out["filled_bins"]
            )
    if "auto" in out:
        _log_auto(out["auto"])
    if "heldout" in out:
        h = out["heldout"]
        if h.get("model_error_percent") is not None:
            low, high = h["model_error_percent_2se"]
            logger.info(
                "Held-out error (even frames predict odd and back, mdx2's interpolation): "
                "model error %.4g counts/s = %.2f%% of the mean background %.4g counts/s "
                "(+-2 standard errors: %.2f-%.2f%%; %d pixel values)",
                h["model_error"],
                h["model_error_percent"],
                h["mean_rate"],
                low,
                high,
                h["pixels"],
            )
            logger.info("  %8s %12s %10s", "phi", "model err %", "NaN px")
            for row in out["per_phi_bin"]:
                pct = row.get("model_error_percent")
                logger.info(
                    "  %8.2f %12s %10d",
                    row["phi"],
                    "-" if pct is None else f"{pct:.2f}",
                    row["nan_pixels"],
                )
    if "nan_pixels" in out:
        nan = out["nan_pixels"]
        if nan:
            logger.warning(
                "Warning: %d valid pixel values (summed over the frames) get a NaN background "
                "under mdx2.correct's interpolation, next to %d empty bins; fill_empty=True "
                "fills them",
                nan,
                empty,
            )
        else:
            logger.info("No valid pixel gets a NaN background under mdx2's interpolation")
    elif empty and binned.filled is None:
        bound = nan_pixel_bound(binned.count)
        out["nan_pixels_bound"] = bound
        logger.warning(
            "Warning: %d empty bins: mdx2.correct gives a NaN background to valid pixels "
            "next to them (up to %d pixel values of this sweep; diagnostics=True counts them "
            "exactly); fill_empty=True fills them",
            empty,
            bound,
        )
    return out


def _log_auto(auto: dict) -> None:
    logger.info("bins=auto: held-out model error of each candidate (* = chosen)")
    logger.info(
        "  %-14s %12s %10s %10s %10s %8s %10s",
        "bins",
        "model err %",
        "disp med",
        "disp p95",
        "disp >thr",
        "empty",
        "NaN px",
    )

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    for row in auto["candidates"]:
        logger.info(
            "%s %-14s %12s %10s %10s %10s %8d %10d",
            "*" if row["chosen"] else " ",
            ",".join(str(b) for b in row["bins"]),
            fmt(row["model_error_percent"], ".3f"),
            fmt(row["dispersion_median"], ".3f"),
            fmt(row["dispersion_p95"], ".3f"),
            fmt(row["dispersion_fraction_above"], ".4f"),
            row["empty_bins"],
            row["nan_pixels"],
        )
    logger.info("bins=auto chose %s", ",".join(str(b) for b in auto["chosen"]))


def report_sections(binned: BinnedMap, quality: dict, profile: dict | None) -> dict:
    """The HTML report's diagnostics sections (dispersion, held-out error, bins=auto, profile)."""
    sections: dict = {}
    if binned.dispersion is not None and np.isfinite(binned.dispersion).any():
        disp = quality.get("dispersion", {})
        med, p95 = (disp.get(k) for k in ("median", "p95"))
        figures = f"median {med:.3f}, 95th percentile {p95:.3f}" if med is not None else ""
        sections["dispersion"] = {
            "kind": "map",
            "values": binned.dispersion,
            "label": "variance / mean",
            "units": "",
            "caption": "Variance-to-mean ratio of each bin's valid counts: ~1 for flat Poisson "
            f"background; {figures}.",
        }
    rows = quality.get("per_phi_bin") or []
    if "heldout" in quality and rows:
        sections["heldout_error"] = {
            "kind": "lines",
            "series": [
                {
                    "name": "model error",
                    "x": [r["phi"] for r in rows],
                    "y": [r.get("model_error_percent") for r in rows],
                }
            ],
            "x_label": "phi (degrees)",
            "y_label": "model error (% of background)",
            "caption": "Even frames' map predicts the odd frames and back (mdx2's "
            "interpolation); sqrt(mean (r - b)^2 - mean c/t^2) over the mean rate.",
        }
    auto = quality.get("auto")
    if auto:
        columns = ["bins", "chosen", "model error %", "dispersion median", "dispersion p95",
                   "empty bins", "NaN pixels"]  # fmt: skip
        sections["bins_auto"] = {
            "kind": "table",
            "columns": columns,
            "rows": [
                [
                    ",".join(map(str, r["bins"])),
                    "*" if r["chosen"] else "",
                    r["model_error_percent"],
                    r["dispersion_median"],
                    r["dispersion_p95"],
                    r["empty_bins"],
                    r["nan_pixels"],
                ]
                for r in auto["candidates"]
            ],
        }
    if profile and profile.get("shells"):
        d_mid = [
            1.0 / math.sqrt((s["inv_d2_min"] + s["inv_d2_max"]) / 2) for s in profile["shells"]
        ]
        sections["radial_profiles"] = {
            "kind": "lines",
            "series": [
                {"name": f"phi {r['phi']:.1f}", "x": d_mid, "y": r["mean_counts_per_s"]}
                for r in profile["per_phi_bin"]
            ],
            "x_label": "resolution d (Angstrom), shells equal in 1/d^2",
            "y_label": "mean background (counts/s per pixel)",
        }
    return sections


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
        "bins": binned.bins,
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
