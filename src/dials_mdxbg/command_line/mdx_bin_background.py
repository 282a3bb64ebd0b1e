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
errors, a PNG preview, an HTML report (output.html) and a per-phi table in
the log.

Examples (the mdx2 insulin tutorial's settings)::

  dials.mdx_bin_background bkg_data.nxs bins=10,20,20 valid_range=0,200 \\
      output.binned=bkg_data_binned.nxs output.plot=bkg_data_binned.png

  dials.mdx_bin_background background.expt insulin_background.phil

  dials.mdx_bin_background background.expt frames.mask=pixels.mask \\
      estimator=clipped_mean mp.nproc=2 output.json=binned.json
"""

from __future__ import annotations

import logging
import sys

import libtbx.phil

from dials_mdxbg.command_line.common import (
    configure_logging,
    handle_errors,
    input_args,
    make_parser,
    parse,
    write_json,
)
from dials_mdxbg.errors import InputError
from dials_mdxbg.util.atomic import committed_together
from dials_mdxbg.util.plan import OutputPlan
from dials_mdxbg.util.startup import prepare
from dials_mdxbg.util.versions import versions

logger = logging.getLogger("dials.mdx_bin_background")

COMMAND = "dials.mdx_bin_background"

phil_scope = libtbx.phil.parse(
    """
input {
  image_series = None
    .type = path
    .help = "mdx2 image series to bin (or give it as the first argument)."
  mdx2_mask = None
    .type = path
    .help = "mdx2 mask file (/entry/mask, True = excluded), same shape as the series."
}
mask = None
  .type = path
  .help = "Deprecated name of input.mdx2_mask (it is an mdx2 mask, not a DIALS one)."
  .expert_level = 3
include scope dials_mdxbg.binning.phil.phil_scope
frames
  .help = "One-step path only (experiments in): frame selection and masking."
{
  include scope dials_mdxbg.frames.phil.phil_scope
}
output {
  binned = binned.nxs
    .type = path
  plot = binned.png
    .type = path
    .help = "PNG preview of the map (None to skip)."
  profile = None
    .type = path
    .help = "PNG of the radial profile (mean background against resolution, per"
            "phi bin); needs the geometry (one-step path, the file's provenance,"
            "or geometry=)."
  html = Auto
    .type = path
    .help = "Self-contained HTML report, readable offline: the map per phi bin, masking, "
            "histogram of the pixel values, per-phi table, run summary. Default: beside the "
            "map, with its name and .html; None to skip."
  log = dials.mdx_bin_background.log
    .type = path
  json = None
    .type = path
}
include scope dials_mdxbg.jobs.phil.phil_scope
""",
    process_includes=True,
)


def _split_series_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Take image-series files out of the arguments before DIALS sees them.

    DIALS' parser would try to read a .nxs file as detector images.
    """
    from dials_mdxbg.series.reader import is_image_series_file

    series, rest = [], []
    for arg in args:
        (series if "=" not in arg and is_image_series_file(arg) else rest).append(arg)
    return series, rest


def run(args: list[str] | None = None, phil=phil_scope) -> None:
    """Command-line entry point: parse, log, then
    :func:`~dials_mdxbg.jobs.bin_background.make_background`."""
    prepare()
    from dials.util import show_mail_handle_errors
    from dials.util.options import flatten_experiments

    from dials_mdxbg.jobs.bin_background import make_background

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
        deprecated_mask = bool(params.mask)
        if deprecated_mask:
            params.input.mdx2_mask = params.input.mdx2_mask or params.mask
        plan = output_plan(series, experiments, params, series_args + args)
        plan.check()  # before any work: nothing is read, nothing written
        with committed_together():  # every output appears at the end, or none
            configure_logging(parser, options, params.output.log)
            plan.remove_stale()
            if deprecated_mask:
                logger.warning(
                    "mask= is deprecated: it is an mdx2 mask, now called input.mdx2_mask= "
                    "(a DIALS mask for the one-step path is frames.mask=)"
                )
            summary = make_background(
                series, experiments, params, phil.format(params).as_str()
            ).to_dict()
            summary["program"] = COMMAND
            summary["versions"] = versions()
            write_json(params.output.json, summary)


def output_plan(series, experiments, params, args: list[str]) -> OutputPlan:
    """What the binning reads and writes, for :meth:`OutputPlan.check`."""
    from dials_mdxbg.frames.files import image_files
    from dials_mdxbg.frames.source import selections, with_imageset
    from dials_mdxbg.jobs.bin_background import html_path_for
    from dials_mdxbg.series.reader import ImageSeriesReader

    plan = OutputPlan()
    for arg in input_args(args):
        plan.add_input(arg, "input")
    indices = [None]
    if series:
        with ImageSeriesReader(series) as reader:  # validated now, with one-line errors
            for path in reader.files:
                plan.add_input(path, "image series file")
    else:
        for iset in experiments.imagesets():
            for path in image_files(iset):
                plan.add_input(path, "image")
        indices = [index for _, index in selections(experiments, params.frames)]
    plan.add_input(params.input.mdx2_mask, "mask")
    plan.add_input(params.frames.mask, "mask")
    plan.add_input(params.geometry, "geometry file")
    for index in indices:
        binned = with_imageset(params.output.binned, index)
        plan.add_output("output.binned", binned)
        plan.add_output("output.plot", with_imageset(params.output.plot, index))
        plan.add_output("output.profile", with_imageset(params.output.profile, index))
        plan.add_output("output.html", html_path_for(params.output.html, binned, index))
    plan.add_output("output.json", params.output.json)
    plan.add_output("output.log", params.output.log)
    return plan


if __name__ == "__main__":
    run()
