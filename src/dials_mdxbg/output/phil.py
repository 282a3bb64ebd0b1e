"""PHIL of what each command writes (the ``output`` scopes) and of the binning's verdict."""

from __future__ import annotations

import libtbx.phil


def _log_and_json(log: str) -> str:
    """The ``log`` and ``json`` outputs both commands write (``log``: its default name)."""
    return f"""  log = {log}
    .type = path
    .help = "The log of the run (what the console shows, and more with -v)."
    .expert_level = 1
  json = Auto
    .type = path
    .help = "Machine-readable summary of the run (JSON, schema in docs/json.md): status,"
            "warnings, the verdict, inputs, outputs, timings. Default: beside the main"
            "output, with its name and .json; None to skip."
    .expert_level = 1"""


binning_str = f"""
output {{
  binned = binned.nxs
    .type = path
    .help = "The background map (mdx2's binned_image_series) for mdx2.correct --background."
            "Give a name per experiment, e.g. bkg_data_binned.nxs; several imagesets add"
            "_imageset<N> to it."
  plot = binned.png
    .type = path
    .help = "PNG preview of the map, one panel per phi bin: look for smooth, ring-shaped"
            "background without holes (None to skip)."
    .expert_level = 1
  profile = None
    .type = path
    .help = "PNG of the radial profile (mean background against resolution, per"
            "phi bin); needs the geometry (one-step path, the file's provenance,"
            "or geometry=). Useful to spot ice rings and the beam stop."
    .expert_level = 1
  html = Auto
    .type = path
    .help = "Self-contained HTML report, readable offline: the verdict, the map per phi bin, "
            "masking, histogram of the pixel values, per-phi table, run summary. Default: "
            "beside the map, with its name and .html; None to skip."
{_log_and_json("dials.mdx_bin_background.log")}
}}
verdict
  .help = "Whether the map is ready for mdx2.correct --background, shown at the end of the"
          "console, in the JSON summary and in the report."
{{
  fail_if_not_ready = False
    .type = bool
    .help = "For pipelines: exit with status 3 (after writing every output) when the map is"
            "not ready for mdx2.correct. Default: exit 0 and say so in the verdict."
  phi_range = None
    .type = floats(size=2)
    .help = "Phi range (degrees, first and last frame) of the data mdx2.correct will"
            "correct with this map: the verdict checks that the map spans it."
    .expert_level = 1
}}
"""

import_str = f"""
output {{
  data = data.nxs
    .type = path
    .help = "The mdx2 image series (NeXus) to write: input of dials.mdx_bin_background,"
            "mdx2.bin_image_series, mdx2.find_peaks and mdx2.integrate."
{_log_and_json("dials.mdx_import.log")}
  layout = *single split
    .type = choice
    .help = "single: one file. split: one part file per slab of frames in"
            "<data>_parts/, joined by a virtual dataset with relative paths"
            "(mdx2's datastore layout, but movable)."
    .expert_level = 1
}}
"""

binning_scope = libtbx.phil.parse(binning_str)
import_scope = libtbx.phil.parse(import_str)
