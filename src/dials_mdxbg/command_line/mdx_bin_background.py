"""
Bin background frames into the coarse 3-D background map that mdx2 subtracts.

Input is either an mdx2 image series (from dials.mdx_import or
mdx2.import_data, given as the first argument) or the background experiments
themselves (.expt or images): the one-step path streams the frames straight
into the map, without writing the image series, and gives exactly the same
map as importing then binning.

The map is written as mdx2's GridData (/entry/binned_image_series: signal in
counts per second, NaN for bins without a valid pixel, axes phi/iy/ix at the
bin centres), numerically identical to mdx2.bin_image_series, for
`mdx2.correct --background`. Beside it: per-bin pixel counts and standard
errors, a PNG preview and a per-phi table in the log.

Examples (the mdx2 insulin tutorial's settings)::

  dials.mdx_bin_background bkg_data.nxs bins=10,20,20 valid_range=0,200 \\
      output.binned=bkg_data_binned.nxs output.plot=bkg_data_binned.png

  dials.mdx_bin_background background.expt phil/insulin_background.phil

  dials.mdx_bin_background background.expt frames.mask=pixels.mask \\
      estimator=clipped_mean mp.nproc=2 output.json=binned.json
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

import dials_mdxbg  # noqa: F401  (sets LIBTBX_BUILD before libtbx is imported)
from dials_mdxbg.background import BinnedMap, BinSource, bin_source, check_bins
from dials_mdxbg.cli import (
    configure_logging,
    handle_errors,
    make_parser,
    parse,
    versions,
    write_json,
)
from dials_mdxbg.cluster import task_engine
from dials_mdxbg.errors import InputError
from dials_mdxbg.frames import frame_source, selections, with_imageset
from dials_mdxbg.nexus import check_writable, is_image_series_file, write_binned
from dials_mdxbg.phil import bin_phil_scope as phil_scope

logger = logging.getLogger("dials.mdx_bin_background")

COMMAND = "dials.mdx_bin_background"


def _split_series_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Take image-series files out of the arguments before DIALS sees them.

    DIALS' parser would try to read a .nxs file as detector images.
    """
    series, rest = [], []
    for arg in args:
        (series if "=" not in arg and is_image_series_file(arg) else rest).append(arg)
    return series, rest


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


def run(args: list[str] | None = None, phil=phil_scope) -> None:
    """Command-line entry point."""
    from dials.util import show_mail_handle_errors
    from dials.util.options import flatten_experiments

    with show_mail_handle_errors(), handle_errors(COMMAND):
        args = sys.argv[1:] if args is None else list(args)
        series_args, args = _split_series_args(args)
        parser = make_parser(
            COMMAND, "(image_series.nxs | experiments.expt | images)", phil, __doc__
        )
        params, options = parse(parser, args)
        if len(series_args) > 1:
            raise InputError(f"give one image series, not {len(series_args)}")
        series = series_args[0] if series_args else params.input.image_series
        experiments = flatten_experiments(params.input.experiments)
        if not series and not experiments:
            parser.print_help()
            raise SystemExit(f"{COMMAND}: error: no image series, experiments or images given")
        if series and experiments:
            raise InputError("give an image series or experiments, not both")
        configure_logging(parser, options, params.output.log)
        bins, valid_range = check_bins(params.bins, params.valid_range)
        if experiments and params.mask:
            raise InputError(
                "mask= is an mdx2 mask for image series input; for experiments use "
                "frames.mask= (a dials.generate_mask mask)"
            )
        if series:
            # Absolute paths, so that dask workers elsewhere find the files.
            mask = str(Path(params.mask).resolve()) if params.mask else None
            src = BinSource(series=str(Path(series).resolve()), mask=mask)
            jobs = [(src, None, str(series))]
        else:
            experiments_json = json.dumps(experiments.to_dict(), default=str)
            jobs = []
            for selection, index in selections(experiments, params.frames):
                # Validate here, before any work, with the one-line errors.
                source = frame_source(experiments, **selection)
                src = BinSource(experiments=experiments_json, selection=selection)
                logger.info(
                    "%s: %d frames; statically masked pixels per frame: %s",
                    source.description,
                    source.n_frames,
                    source.masked_static,
                )
                jobs.append((src, index, source.description))
        with contextlib.ExitStack() as stack:
            engine = stack.enter_context(task_engine(params.mp))
            summaries = [
                _bin_one(src, index, described, params, phil, bins, valid_range, engine)
                for src, index, described in jobs
            ]
        summary = summaries[0] if len(summaries) == 1 else {"imagesets": summaries}
        summary["program"] = COMMAND
        summary["versions"] = versions()
        write_json(params.output.json, summary)


def _bin_one(src, index, described, params, phil, bins, valid_range, engine) -> dict:
    """Bin one input (``index`` names the outputs when there are several imagesets)."""
    binned_path = with_imageset(params.output.binned, index)
    plot_path = with_imageset(params.output.plot, index)
    check_writable(binned_path)
    if plot_path:
        check_writable(plot_path)
    kind = "image_series" if src.series else "experiments"
    logger.info("Binning %s (%s) with bins %s", described, kind, bins)
    t0 = time.perf_counter()
    binned, n_frames = bin_source(
        src,
        bins,
        valid_range,
        params.estimator,
        params.clip.n_sigma,
        params.mp.nproc,
        engine,
        params.mp.dask.frames_per_task,
    )
    seconds = round(time.perf_counter() - t0, 3)

    empty = int(np.count_nonzero(binned.count == 0))
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
    provenance = {
        "program": COMMAND,
        "phil": phil.format(params).as_str(),
        "versions": versions(),
        "input": input_info,
    }
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
        from dials_mdxbg.plot import plot_map

        plot_map(
            plot_path,
            binned.phi,
            binned.iy,
            binned.ix,
            binned.signal,
            title=f"{binned_path}: bins {bins}, valid_range {valid_range}",
        )
        logger.info("Preview written to %s", plot_path)
    summary = dict(input_info)
    summary.update(
        {
            "output": str(binned_path),
            "plot": str(plot_path) if plot_path else None,
            "bins": list(bins),
            "valid_range": list(valid_range) if valid_range else None,
            "estimator": binned.estimator,
            "map_shape": list(binned.signal.shape),
            "empty_bins": empty,
            "per_phi_bin": binned.phi_table(),
            "seconds": seconds,
        }
    )
    return summary


if __name__ == "__main__":
    run()
