"""
Import a rotation sweep into an mdx2 image series (NeXus), ready for mdx2.

The output is laid out exactly as mdx2.import_data writes it
(/entry/image_series: int32 data with masked pixels = -1, phi, iy, ix,
exposure_times), so mdx2.bin_image_series, mdx2.find_peaks, mdx2.integrate and
NeXpy read it unchanged. Masked pixels are those dxtbx calls invalid: outside
the trusted range, module gaps and the format's static mask, the experiment
list's mask, an optional dials.generate_mask mask, and the goniometer shadow
when requested. Frames are streamed: memory holds a frame or two and the
compressed current slab, never the sweep.

An experiment list with several imagesets needs imageset=N (0-based), or
all_imagesets=True for one output per imageset (<name>_imageset<N>.nxs); the
default is never to guess. With mp.method=dask, frame ranges are imported as
tasks on a dask.distributed cluster (local, a scheduler, or SLURM/PBS/SGE/LSF).

Examples::

  dials.mdx_import background.expt output.data=bkg_data.nxs chunks=10,211,493

  dials.mdx_import background.expt mask=pixels.mask image_range=1,90 mp.nproc=2

  dials.mdx_import images/bkg_*.cbf output.data=bkg_data.nxs output.json=import.json

  dials.mdx_import background.expt output.layout=split

  dials.mdx_import sweeps.expt all_imagesets=True output.json=import.json

  dials.mdx_import background.expt mp.method=dask mp.nproc=2

  dials.mdx_import background.expt slurm_dask.phil
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
from dials_mdxbg.util.atomic import committed_together
from dials_mdxbg.util.plan import OutputPlan
from dials_mdxbg.util.startup import prepare
from dials_mdxbg.util.versions import versions

logger = logging.getLogger("dials.mdx_import")

COMMAND = "dials.mdx_import"

phil_scope = libtbx.phil.parse(
    """
output {
  data = data.nxs
    .type = path
    .help = "The mdx2 image series (NeXus) to write."
  log = dials.mdx_import.log
    .type = path
  json = None
    .type = path
    .help = "Optional machine-readable summary of the run."
  layout = *single split
    .type = choice
    .help = "single: one file. split: one part file per slab of frames in"
            "<data>_parts/, joined by a virtual dataset with relative paths"
            "(mdx2's datastore layout, but movable)."
}
include scope dials_mdxbg.series.phil.phil_scope
include scope dials_mdxbg.frames.phil.phil_scope
include scope dials_mdxbg.jobs.phil.phil_scope
""",
    process_includes=True,
)


def run(args: list[str] | None = None, phil=phil_scope) -> None:
    """Command-line entry point: parse, log, :func:`~dials_mdxbg.jobs.import_sweep.import_sweep`."""
    prepare()
    from dials.util import show_mail_handle_errors
    from dials.util.options import flatten_experiments

    from dials_mdxbg.jobs.import_sweep import import_sweep

    with show_mail_handle_errors(), handle_errors(COMMAND):
        args = sys.argv[1:] if args is None else list(args)
        parser = make_parser(COMMAND, "experiments.expt|images", phil, __doc__)
        params, options = parse(parser, args)
        experiments = flatten_experiments(params.input.experiments)
        if not experiments:
            parser.print_help()
            raise SystemExit(f"{COMMAND}: error: no experiments or images given")
        plan = output_plan(experiments, params, args)
        plan.check()  # before any work: nothing is read, nothing written
        with committed_together():  # every output appears at the end, or none
            configure_logging(parser, options, params.output.log)
            plan.remove_stale()
            summary = import_sweep(experiments, params, phil.format(params).as_str()).to_dict()
            summary["program"] = COMMAND
            summary["versions"] = versions()
            write_json(params.output.json, summary)


def output_plan(experiments, params, args: list[str]) -> OutputPlan:
    """What the import reads and writes, for :meth:`OutputPlan.check`."""
    from dials_mdxbg.frames.files import image_files
    from dials_mdxbg.frames.source import selections, with_imageset

    plan = OutputPlan()
    for arg in input_args(args):
        plan.add_input(arg, "input")
    for iset in experiments.imagesets():
        for path in image_files(iset):
            plan.add_input(path, "image")
    plan.add_input(params.mask, "mask")
    split = params.output.layout == "split"
    for _, index in selections(experiments, params):
        data = with_imageset(params.output.data, index)
        plan.add_output("output.data", data)
        # The parts folder of the split layout; otherwise only scratch (a dask run's).
        parts = data.with_name(data.stem + "_parts")
        plan.add_output("output.data's parts folder", parts, "dir" if split else "scratch")
    plan.add_output("output.json", params.output.json)
    plan.add_output("output.log", params.output.log)
    return plan


if __name__ == "__main__":
    run()
