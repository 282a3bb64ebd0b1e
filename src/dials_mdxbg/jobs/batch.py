"""Dask workers as batch jobs (``mp.dask.cluster=slurm|pbs|sge|lsf``) through dask-jobqueue.

dask-jobqueue submits one job per worker and forgets it. This module adds
what a command needs to fail cleanly: a submission the queue refuses is
recorded (instead of a tornado traceback and a wait for ``worker_timeout``),
and on SLURM the queue is asked, once no worker is connected, whether any of
our jobs can still give one. The job script sends the jobs' own output where
``mp.dask.job_output`` says (nowhere by default), and neither the scheduler
nor the workers serve a dashboard.
"""

from __future__ import annotations

import contextlib
import shutil
import time

from dials_mdxbg.errors import InputError
from dials_mdxbg.jobs import slurm

_JOBQUEUE = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
}

#: Seconds between two questions to the queue while no worker is connected.
POLL_QUEUE = 1.0


def _recording(job_cls):
    """A subclass of dask-jobqueue's ``job_cls`` that records submitted ids and refusals."""
    from distributed.core import Status

    class RecordingJob(job_cls):
        submitted: list[str] = []
        refusals: list[str] = []

        async def start(self):
            try:
                await super().start()
            except (RuntimeError, ValueError) as e:
                # The queue said no: keep its words; the command stops on them.
                type(self).refusals.append(slurm.submit_error(str(e)))
                self.status = Status.running  # nothing to wait for, nothing to cancel
            else:
                type(self).submitted.append(self.job_id)

    return RecordingJob


class BatchJobs:
    """The batch cluster a command started, and what its queue says of the worker jobs."""

    def __init__(self, opts, kind: str):
        self.kind = kind
        self.opts = opts
        self.job_cls = None
        self._asked = 0.0
        self.seen: set[str] = set()  # job ids squeue has shown

    def start(self, stack: contextlib.ExitStack):
        """Submit ``mp.dask.njobs`` worker jobs; closing ``stack`` closes the cluster (scancel)."""
        try:
            import dask_jobqueue
        except ImportError:
            raise InputError(
                f"mp.dask.cluster={self.kind} needs dask-jobqueue: pip install dask-jobqueue"
            ) from None
        cluster_cls = getattr(dask_jobqueue, _JOBQUEUE[self.kind])
        submit = cluster_cls.job_cls.submit_command
        if not shutil.which(submit):
            raise InputError(
                f"mp.dask.cluster={self.kind}: {submit} not found (run on a "
                f"{self.kind.upper()} submission host)"
            )
        self.job_cls = _recording(cluster_cls.job_cls)
        kwargs = job_options(self.opts)
        try:
            cluster = stack.enter_context(cluster_cls(job_cls=self.job_cls, **kwargs))
        except ValueError as e:  # dask-jobqueue's own check of the options
            reason = " ".join(str(e).split())[:200]
            raise InputError(f"mp.dask: {reason}; no output written") from None
        cluster.scale(jobs=self.opts.njobs)
        return cluster

    def problem(self) -> str | None:
        """One line saying why no worker can come any more, or None while one may."""
        submit = self.job_cls.submit_command if self.job_cls else "the queue"
        if self.job_cls and self.job_cls.refusals:
            return (
                f"{submit} refused the worker job: {self.job_cls.refusals[0]}; set what this "
                f"site allows (mp.dask.queue, cores, memory, walltime); no output written"
            )
        if self.kind != "slurm" or not self.job_cls or not self.job_cls.submitted:
            return None
        if time.monotonic() - self._asked < POLL_QUEUE:
            return None
        self._asked = time.monotonic()
        states = slurm.job_states(list(self.job_cls.submitted))
        if states is None:
            return None
        self.seen.update(j for j, s in states.items() if s != "GONE")
        if any(s == "GONE" and j not in self.seen for j, s in states.items()):
            return None  # never seen in the queue: squeue is not telling us about it
        reason = slurm.ended_reason(states)
        if reason:
            return f"no dask worker is left: SLURM {reason}; no output written"
        return None

    def wait_for_worker(self, client, timeout: float) -> None:
        """Return once a worker joined; one line at once if the queue says none can."""
        deadline = time.monotonic() + timeout
        # Polled rather than client.wait_for_workers(timeout=): each of those
        # that times out leaves a future that asyncio reports at exit.
        while not client.scheduler_info().get("workers"):
            problem = self.problem()
            if problem:
                raise InputError(problem)
            if time.monotonic() >= deadline:
                raise InputError(
                    f"no dask worker joined within {timeout} s (the {self.kind} jobs are "
                    "still queued?); no output written"
                )
            time.sleep(0.25)

    def describe(self) -> str:
        """The jobs' request, for the log."""
        o = self.opts
        return (
            f"{o.njobs} {self.kind} job(s): queue {o.queue or '(default)'}, {o.cores} core(s), "
            f"{o.memory}, wall time {o.walltime}, job output {o.job_output or '/dev/null'}"
        )


def job_options(opts) -> dict:
    """dask-jobqueue's keyword arguments for the ``mp.dask`` scope.

    The job script gets ``-o``/``-e`` directives for the jobs' own output (a
    folder, or ``/dev/null``: no ``slurm-<id>.out`` in the working folder);
    the scheduler's HTTP endpoint stays on loopback without dashboard pages.
    """
    kwargs = {
        "cores": opts.cores,
        "memory": opts.memory,
        "walltime": opts.walltime,
        "scheduler_options": {"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        "worker_extra_args": ["--no-dashboard"],
    }
    if opts.queue:
        kwargs["queue"] = opts.queue
    if opts.job_output:
        kwargs["log_directory"] = str(opts.job_output)
    else:
        kwargs["job_extra_directives"] = ["-o /dev/null", "-e /dev/null"]
    return kwargs
