"""
Import a rotation sweep into an mdx2 image series (NeXus), ready for mdx2.

The output is laid out exactly as mdx2.import_data writes it
(/entry/image_series: int32 data with masked pixels = -1, phi, iy, ix,
exposure_times), so mdx2.bin_image_series, mdx2.find_peaks, mdx2.integrate and
NeXpy read it unchanged. Masked pixels are those dxtbx calls invalid: outside
the trusted range, module gaps and the format's static mask, the experiment
list's mask, an optional dials.generate_mask mask, and the goniometer shadow
when requested. Frames are streamed: memory holds one chunk of frames.

An experiment list with several imagesets needs imageset=N (0-based); the
default is never to guess.

Examples::

  dials.mdx_import background.expt output.data=bkg_data.nxs chunks=10,211,493

  dials.mdx_import background.expt mask=pixels.mask image_range=1,90 mp.nproc=2

  dials.mdx_import images/bkg_*.cbf output.data=bkg_data.nxs output.json=import.json

  dials.mdx_import background.expt output.layout=split
"""

from __future__ import annotations

import json
import logging

import dials_mdxbg  # noqa: F401  (sets LIBTBX_BUILD before libtbx is imported)
from dials_mdxbg.cli import configure_logging, handle_errors, parse, versions, write_json
from dials_mdxbg.frames import frame_source
from dials_mdxbg.importer import import_frames, resolve_chunks
from dials_mdxbg.phil import import_phil_scope as phil_scope

logger = logging.getLogger("dials.mdx_import")

COMMAND = "dials.mdx_import"


def run(args: list[str] | None = None, phil=phil_scope) -> None:
    """Command-line entry point."""
    from dials.util import show_mail_handle_errors
    from dials.util.options import ArgumentParser, flatten_experiments

    with show_mail_handle_errors(), handle_errors(COMMAND):
        parser = ArgumentParser(
            usage=f"{COMMAND} [options] experiments.expt|images",
            phil=phil,
            read_experiments=True,
            read_experiments_from_images=True,
            check_format=True,
            epilog=__doc__,
        )
        params, options = parse(parser, args)
        experiments = flatten_experiments(params.input.experiments)
        if not experiments:
            parser.print_help()
            raise SystemExit(f"{COMMAND}: error: no experiments or images given")
        configure_logging(parser, options, params.output.log)

        source = frame_source(
            experiments,
            imageset=params.imageset,
            image_range=params.image_range,
            mask=params.mask,
            goniometer_shadow=params.goniometer_shadow,
        )
        chunks = resolve_chunks(params.chunks, source)
        provenance = {
            "program": COMMAND,
            "phil": phil.format(params).as_str(),
            "versions": versions(),
            "experiments": json.dumps(experiments.to_dict(), default=str),
        }
        summary = import_frames(
            source,
            params.output.data,
            chunks,
            level=params.compression.level,
            nproc=params.mp.nproc,
            split=params.output.layout == "split",
            provenance=provenance,
        )
        summary["program"] = COMMAND
        summary["versions"] = provenance["versions"]
        write_json(params.output.json, summary)


if __name__ == "__main__":
    run()
