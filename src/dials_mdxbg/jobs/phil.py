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
      .help = "Cores of each batch job (one dask worker per job)."
    memory = "4GB"
      .type = str
      .help = "Memory of each batch job (e.g. 4GB; a Pilatus 6M worker needs ~1 GB, an Eiger 16M"
              "~2 GB); the queue refuses more than a node has."
    queue = None
      .type = str
      .help = "Queue (SLURM partition) of the batch jobs. None: the site's default."
    walltime = "01:00:00"
      .type = str
      .help = "Wall time of each batch job; when it runs out the run stops (one line)."
    job_output = None
      .type = path
      .help = "Folder for the batch jobs' own stdout/stderr (worker logs). None:"
              "discarded (/dev/null), so no slurm-<id>.out is left in the working folder."
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
