"""PHIL of how an image series is chunked and compressed."""

from __future__ import annotations

import libtbx.phil

phil_str = """
chunks = None
  .type = ints(size=3)
  .help = "HDF5 chunk shape (frames, y, x). Default: mdx2's rule (a few degrees"
          "of frames, one detector module with its gap). 0 or -1 = that default."
          "mdx2.bin_image_series reads whole chunks: keep the default unless a"
          "reader needs another shape."
  .expert_level = 1
compression
  .expert_level = 2
{
  level = 1
    .type = int(value_min=0, value_max=9)
    .help = "gzip level of the standard HDF5 deflate filter (with shuffle). 1 is fast;"
            "higher levels save a few percent of disk for much more time."
}
"""

phil_scope = libtbx.phil.parse(phil_str)
