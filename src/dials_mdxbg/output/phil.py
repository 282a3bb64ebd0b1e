"""PHIL of what each command writes (the ``output`` scopes)."""

from __future__ import annotations

import libtbx.phil

binning_str = """
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
"""

import_str = """
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
"""

binning_scope = libtbx.phil.parse(binning_str)
import_scope = libtbx.phil.parse(import_str)
