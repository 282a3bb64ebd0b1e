"""PHIL of where the work runs (DIALS' ``mp`` scope): threads here, or a dask cluster."""

from __future__ import annotations

import libtbx.phil

phil_str = """
mp {
  method = *multiprocessing dask
    .type = choice
    .help = "multiprocessing: threads on this machine. dask: frame ranges as"
            "tasks on a dask.distributed cluster (pip install 'dials-mdxbg[dask]')."
    .expert_level = 1
  nproc = 1
    .type = int(value_min=1)
    .help = "Cores to use (threads; or workers of a local dask cluster). Auto: all"
            "the cores this process may use."
  dask
    .help = "mp.method=dask only: where the cluster is and what its workers get."
    .expert_level = 2
  {
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
      .help = "Cores per batch job (dask-jobqueue)."
    memory = "4GB"
      .type = str
      .help = "Memory per batch job; a Pilatus 6M worker needs ~1 GB, an Eiger 16M ~2 GB."
    queue = None
      .type = str
      .help = "Batch queue or partition (None: the cluster's default)."
    walltime = "01:00:00"
      .type = str
      .help = "Wall time per batch job (HH:MM:SS): long enough for its share of frames."
    njobs = 1
      .type = int(value_min=1)
      .help = "Batch jobs to start (each one dask worker with 'cores' threads)."
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

phil_scope = libtbx.phil.parse(phil_str)


def resolve_nproc(mp) -> None:
    """``mp.nproc=Auto`` (DIALS' spelling for all cores) becomes the cores this process may use."""
    import os

    import libtbx

    if mp.nproc is libtbx.Auto or mp.nproc is None:
        mp.nproc = len(os.sched_getaffinity(0)) or 1
