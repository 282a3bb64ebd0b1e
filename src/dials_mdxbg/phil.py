"""PHIL parameter scopes for both commands, in one place."""

from __future__ import annotations

import libtbx.phil

# Which frames of which imageset, and how pixels are masked. Used at top level
# by dials.mdx_import and under `frames` by dials.mdx_bin_background's
# one-step path, so the two paths mask identically.
FRAME_SELECTION = """
mask = None
  .type = path
  .help = "A mask from dials.generate_mask (pickle, True = good pixel), applied"
          "on top of the experiment list's own mask, gaps and trusted range."
image_range = None
  .type = ints(size=2, value_min=1)
  .help = "First and last image to use (1-based, inclusive, as in the scan)."
imageset = None
  .type = int(value_min=0)
  .help = "Which imageset (0-based) of a multi-imageset experiment list to use."
          "Required when there is more than one (or all_imagesets=True): they are"
          "never merged or dropped silently."
all_imagesets = False
  .type = bool
  .help = "Process every imageset, one output each, named <name>_imageset<N>.<ext>."
goniometer_shadow = False
  .type = bool
  .help = "Mask the goniometer shadow, where the format models one."
"""

MP = """
mp {
  method = *multiprocessing dask
    .type = choice
    .help = "multiprocessing: threads on this machine. dask: frame ranges as"
            "tasks on a dask.distributed cluster (pip install 'dials-mdxbg[dask]')."
  nproc = 1
    .type = int(value_min=1)
    .help = "Cores to use (threads; or workers of a local dask cluster)."
  dask {
    scheduler = None
      .type = str
      .help = "Address of a running dask scheduler (tcp://host:8786). Unset:"
              "start the cluster given by 'cluster'."
    cluster = *local slurm pbs sge lsf
      .type = choice
      .help = "local: mp.nproc worker processes here. Others: batch jobs via"
              "dask-jobqueue with the resources below."
    cores = 1
      .type = int(value_min=1)
    memory = "4GB"
      .type = str
    queue = None
      .type = str
    walltime = "01:00:00"
      .type = str
    njobs = 1
      .type = int(value_min=1)
    timeout = 30
      .type = int(value_min=1)
      .help = "Seconds to wait for the scheduler."
    worker_timeout = 600
      .type = int(value_min=1)
      .help = "Seconds to wait for a worker: the first (batch jobs may queue), or a new one"
              " after all were lost."
    frames_per_task = None
      .type = int(value_min=1)
      .help = "Frames per task (rounded up to whole chunks). Default: about"
              "four tasks per worker."
  }
}
"""

import_phil_str = (
    """
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
chunks = None
  .type = ints(size=3)
  .help = "HDF5 chunk shape (frames, y, x). Default: mdx2's rule (a few degrees"
          "of frames, one detector module with its gap). 0 or -1 = that default."
compression {
  level = 1
    .type = int(value_min=0, value_max=9)
    .help = "gzip level of the standard HDF5 deflate filter (with shuffle)."
}
"""
    + FRAME_SELECTION
    + MP
)

bin_phil_str = (
    """
input {
  image_series = None
    .type = path
    .help = "mdx2 image series to bin (or give it as the first argument)."
}
bins = 10 20 20
  .type = ints(size=3)
  .help = "Bin size: frames, pixels in y, pixels in x."
valid_range = None
  .type = ints(size=2)
  .help = "Inclusive range of counts used; others (and -1) are ignored."
mask = None
  .type = path
  .help = "mdx2 mask file (/entry/mask, True = excluded), same shape as the series."
estimator = *mean clipped_mean
  .type = choice
  .help = "mean: mdx2's masked mean. clipped_mean: then reject counts above"
          "mean + n_sigma*sqrt(mean) in each bin (zingers, stray Bragg) and"
          "average again (two passes over the data)."
clip {
  n_sigma = 5.0
    .type = float(value_min=0)
}
frames
  .help = "One-step path only (experiments in): frame selection and masking."
{
"""
    + FRAME_SELECTION
    + """
}
output {
  binned = binned.nxs
    .type = path
  plot = binned.png
    .type = path
    .help = "PNG preview of the map (None to skip)."
  log = dials.mdx_bin_background.log
    .type = path
  json = None
    .type = path
}
"""
    + MP
)

import_phil_scope = libtbx.phil.parse(import_phil_str, process_includes=True)
bin_phil_scope = libtbx.phil.parse(bin_phil_str, process_includes=True)
