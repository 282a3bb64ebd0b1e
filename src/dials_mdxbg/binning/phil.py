"""PHIL of the binning algorithm: bin size, valid counts, estimator."""

from __future__ import annotations

import libtbx.phil

phil_str = """
bins = 10 20 20
  .type = ints(size=3)
  .help = "Bin size: frames, pixels in y, pixels in x."
valid_range = None
  .type = ints(size=2)
  .help = "Inclusive range of counts used; others (and -1) are ignored."
estimator = *mean clipped_mean
  .type = choice
  .help = "mean: mdx2's masked mean. clipped_mean: then reject counts above"
          "mean + n_sigma*sqrt(mean) in each bin (zingers, stray Bragg) and"
          "average again (two passes over the data)."
clip {
  n_sigma = 5.0
    .type = float(value_min=0)
}
"""

phil_scope = libtbx.phil.parse(phil_str)
