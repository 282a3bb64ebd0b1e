"""PHIL of frame selection and masking, shared by both commands.

``dials.mdx_import`` includes it at top level, ``dials.mdx_bin_background``
under ``frames`` (its one-step path), so the two paths mask identically.
"""

from __future__ import annotations

import libtbx.phil

phil_str = """
mask = None
  .type = path
  .help = "A mask from dials.generate_mask (pickle, True = good pixel), applied"
          "on top of the experiment list's own mask, gaps and trusted range."
image_range = None
  .type = ints(size=2, value_min=1)
  .help = "First and last image to use (1-based, inclusive, as in the scan). Default:"
          "the whole sweep."
imageset = None
  .type = int(value_min=0)
  .help = "Which imageset (0-based) of a multi-imageset experiment list to use."
          "Required when there is more than one (or all_imagesets=True): they are"
          "never merged or dropped silently."
  .expert_level = 1
all_imagesets = False
  .type = bool
  .help = "Process every imageset, one output each, named <name>_imageset<N>.<ext>."
  .expert_level = 1
goniometer_shadow = False
  .type = bool
  .help = "Mask the goniometer shadow, where the format models one (e.g. Pilatus"
          "on a mini-kappa); use it when the background frames show the shadow."
  .expert_level = 1
"""

phil_scope = libtbx.phil.parse(phil_str)
