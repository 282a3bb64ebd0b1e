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

import libtbx.phil

from dials_mdxbg.command_line.common import run_command

COMMAND = "dials.mdx_import"

phil_scope = libtbx.phil.parse(
    """
include scope dials_mdxbg.output.phil.import_scope
include scope dials_mdxbg.series.phil.phil_scope
include scope dials_mdxbg.frames.phil.phil_scope
include scope dials_mdxbg.jobs.phil.phil_scope
""",
    process_includes=True,
)


def run(args: list[str] | None = None, phil=phil_scope) -> None:
    """Command-line entry point: :func:`~dials_mdxbg.jobs.import_sweep.import_sweep`."""
    run_command(COMMAND, __doc__, phil, "import", args)


if __name__ == "__main__":
    run()
