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

import logging
import sys

import dials_mdxbg  # noqa: F401  (sets LIBTBX_BUILD before libtbx is imported)
from dials_mdxbg.background import (
    BinnedMap,
    bin_blocks,
    check_bins,
    frame_tasks,
    mdx2_mask_excluder,
    series_tasks,
)
from dials_mdxbg.cli import (
    Progress,
    configure_logging,
    handle_errors,
    parse,
    versions,
    write_json,
)
from dials_mdxbg.errors import InputError
from dials_mdxbg.frames import frame_source
from dials_mdxbg.nexus import (
    ImageSeriesReader,
    check_writable,
    is_image_series_file,
    read_mdx2_mask,
    write_binned,
)
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
    from dials.util.options import ArgumentParser, flatten_experiments

    with show_mail_handle_errors(), handle_errors(COMMAND):
        args = sys.argv[1:] if args is None else list(args)
        series_args, args = _split_series_args(args)
        parser = ArgumentParser(
            usage=f"{COMMAND} [options] (image_series.nxs | experiments.expt | images)",
            phil=phil,
            read_experiments=True,
            read_experiments_from_images=True,
            check_format=True,
            epilog=__doc__,
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
        check_writable(params.output.binned)
        if params.output.plot:
            check_writable(params.output.plot)

        if series:
            binned, described = _bin_series(series, params, bins, valid_range)
        else:
            binned, described = _bin_experiments(experiments, params, bins, valid_range)
        _finish(binned, described, params, phil, bins, valid_range)


def _bin_series(path, params, bins, valid_range) -> tuple[BinnedMap, dict]:
    with ImageSeriesReader(path) as reader:
        logger.info("Binning image series %s %s with bins %s", path, reader.shape, bins)
        excluded = None
        if params.mask:
            excluded = mdx2_mask_excluder(read_mdx2_mask(params.mask, reader.shape))
        progress = Progress(reader.shape[0], "frames")
        binned = bin_blocks(
            series_tasks(reader, progress),
            reader.axes,
            bins,
            valid_range,
            excluded,
            params.estimator,
            params.clip.n_sigma,
            params.mp.nproc,
        )
        return binned, {
            "input": str(path),
            "input_kind": "image_series",
            "frames": reader.shape[0],
            "shape": list(reader.shape),
            "seconds": round(progress.elapsed, 3),
        }


def _bin_experiments(experiments, params, bins, valid_range) -> tuple[BinnedMap, dict]:
    if params.mask:
        raise InputError(
            "mask= is an mdx2 mask for image series input; for experiments use "
            "frames.mask= (a dials.generate_mask mask)"
        )
    sel = params.frames
    source = frame_source(
        experiments, sel.imageset, sel.image_range, sel.mask, sel.goniometer_shadow
    )
    shape = (source.n_frames, *source.frame_shape)
    logger.info(
        "Binning %d frames of %s directly (one step) with bins %s",
        source.n_frames,
        source.description,
        bins,
    )
    progress = Progress(source.n_frames, "frames")
    binned = bin_blocks(
        frame_tasks(source, progress),
        source.axes,
        bins,
        valid_range,
        None,
        params.estimator,
        params.clip.n_sigma,
        params.mp.nproc,
    )
    return binned, {
        "input": source.description,
        "input_kind": "experiments",
        "frames": source.n_frames,
        "shape": list(shape),
        "masked_static": source.masked_static,
        "seconds": round(progress.elapsed, 3),
    }


def _finish(binned: BinnedMap, described: dict, params, phil, bins, valid_range) -> None:
    import numpy as np

    empty = int(np.count_nonzero(binned.count == 0))
    if empty == binned.count.size:
        logger.warning("Warning: every pixel is masked or outside valid_range; the map is all NaN")
    elif empty:
        logger.info("%d of %d bins have no valid pixel (NaN)", empty, binned.count.size)
    provenance = {
        "program": COMMAND,
        "phil": phil.format(params).as_str(),
        "versions": versions(),
        "input": described,
    }
    write_binned(
        params.output.binned,
        (binned.phi, binned.iy, binned.ix),
        binned.signal,
        binned.extra_datasets(),
        provenance,
    )
    logger.info("Wrote %s", params.output.binned)
    log_table(binned)
    if params.output.plot:
        from dials_mdxbg.plot import plot_map

        plot_map(
            params.output.plot,
            binned.phi,
            binned.iy,
            binned.ix,
            binned.signal,
            title=f"{params.output.binned}: bins {bins}, valid_range {valid_range}",
        )
        logger.info("Preview written to %s", params.output.plot)
    summary = dict(described)
    summary.update(
        {
            "program": COMMAND,
            "output": str(params.output.binned),
            "plot": str(params.output.plot) if params.output.plot else None,
            "bins": list(bins),
            "valid_range": list(valid_range) if valid_range else None,
            "estimator": binned.estimator,
            "map_shape": list(binned.signal.shape),
            "empty_bins": empty,
            "per_phi_bin": binned.phi_table(),
            "versions": provenance["versions"],
        }
    )
    write_json(params.output.json, summary)


if __name__ == "__main__":
    run()
