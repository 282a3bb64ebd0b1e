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

import libtbx.phil

from dials_mdxbg.command_line.common import run_command

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
    .expert_level = 1
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
include scope dials_mdxbg.output.phil.binning_scope
include scope dials_mdxbg.jobs.phil.phil_scope
""",
    process_includes=True,
)


def run(args: list[str] | None = None, phil=phil_scope) -> None:
    """Command-line entry point: :func:`~dials_mdxbg.jobs.bin_background.make_background`."""
    run_command(COMMAND, __doc__, phil, "bin_background", args)


if __name__ == "__main__":
    run()
