"""PHIL of the binning algorithm: bin size (or auto), valid counts, estimator, diagnostics."""

from __future__ import annotations

import libtbx.phil

phil_str = """
bins = 10 20 20
  .type = strings
  .help = "Bin size: frames, pixels in y, pixels in x (e.g. 10,20,20); or auto:"
          "score every candidate of auto.frames x auto.pixels by its held-out error "
          "and keep the best."
auto {
  frames = 2 3 5 10 20
    .type = ints(value_min=1)
    .help = "Candidate bin sizes in frames for bins=auto (those giving a single phi"
            "bin are left out: mdx2 cannot interpolate such a map)."
  pixels = 10 20 40 80
    .type = ints(value_min=1)
    .help = "Candidate bin sizes in pixels (square bins, y = x) for bins=auto."
}
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
fill_empty = False
  .type = bool
  .help = "Fill empty bins from their valid neighbours (y/x, then phi) so that"
          "mdx2.correct's interpolation is finite at every valid pixel; filled"
          "bins are flagged in /entry/binned_image_series/filled."
diagnostics = False
  .type = bool
  .help = "Held-out error of the map (even frames predict odd ones and back) and"
          "exact counts of valid pixels that would get a NaN background: a second"
          "pass over the frames. Always on with bins=auto."
dispersion_threshold = 2.0
  .type = float(value_min=0)
  .help = "Bins whose variance-to-mean ratio exceeds this are counted in the log."
geometry = None
  .type = path
  .help = "Experiment list (.expt) for the radial profile of an image series; by"
          "default the geometry stored in the file (dials.mdx_import's provenance)."
profile {
  n_shells = 20
    .type = int(value_min=1)
    .help = "Resolution shells (equal in 1/d^2) of the radial profile."
}
"""

phil_scope = libtbx.phil.parse(phil_str)
