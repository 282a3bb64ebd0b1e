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

  dials.mdx_import background.expt phil/slurm_dask.phil
"""

from __future__ import annotations

import contextlib
import json
import logging

import dials_mdxbg  # noqa: F401  (sets LIBTBX_BUILD before libtbx is imported)
from dials_mdxbg.cli import (
    configure_logging,
    handle_errors,
    make_parser,
    parse,
    versions,
    write_json,
)
from dials_mdxbg.cluster import task_engine
from dials_mdxbg.frames import frame_source, selections, with_imageset
from dials_mdxbg.importer import import_frames, import_frames_parallel, resolve_chunks
from dials_mdxbg.phil import import_phil_scope as phil_scope

logger = logging.getLogger("dials.mdx_import")

COMMAND = "dials.mdx_import"


def run(args: list[str] | None = None, phil=phil_scope) -> None:
    """Command-line entry point."""
    from dials.util import show_mail_handle_errors
    from dials.util.options import flatten_experiments

    with show_mail_handle_errors(), handle_errors(COMMAND):
        parser = make_parser(COMMAND, "experiments.expt|images", phil, __doc__)
        params, options = parse(parser, args)
        experiments = flatten_experiments(params.input.experiments)
        if not experiments:
            parser.print_help()
            raise SystemExit(f"{COMMAND}: error: no experiments or images given")
        configure_logging(parser, options, params.output.log)

        runs = selections(experiments, params)
        experiments_json = json.dumps(experiments.to_dict(), default=str)
        with contextlib.ExitStack() as stack:
            engine = stack.enter_context(task_engine(params.mp))
            summaries = [
                _import_one(params, phil, experiments_json, experiments, selection, index, engine)
                for selection, index in runs
            ]
        summary = summaries[0] if len(summaries) == 1 else {"imagesets": summaries}
        summary["program"] = COMMAND
        summary["versions"] = versions()
        write_json(params.output.json, summary)


def _import_one(params, phil, experiments_json, experiments, selection, index, engine) -> dict:
    """Import one imageset (``index`` names the output when there are several)."""
    source = frame_source(experiments, **selection)
    output = with_imageset(params.output.data, index)
    if index is not None:
        logger.info("Imageset %d: %s -> %s", index, source.description, output)
    chunks = resolve_chunks(params.chunks, source)
    provenance = {
        "program": COMMAND,
        "phil": phil.format(params).as_str(),
        "versions": versions(),
        "experiments": experiments_json,
        "imageset": json.dumps(selection["imageset"]),
    }
    split = params.output.layout == "split"
    if engine is not None:
        summary = import_frames_parallel(
            engine,
            experiments_json,
            selection,
            source,
            output,
            chunks,
            level=params.compression.level,
            split=split,
            provenance=provenance,
            frames_per_task=params.mp.dask.frames_per_task,
        )
    else:
        summary = import_frames(
            source,
            output,
            chunks,
            level=params.compression.level,
            nproc=params.mp.nproc,
            split=split,
            provenance=provenance,
        )
    summary["imageset"] = selection["imageset"] if index is None else index
    return summary


if __name__ == "__main__":
    run()
