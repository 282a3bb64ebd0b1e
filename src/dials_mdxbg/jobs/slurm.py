"""What SLURM says about our worker jobs: why a submission was refused, and which jobs ended.

dask-jobqueue submits and cancels the jobs; it never asks the queue what
became of them. A job that SLURM refuses, cancels or stops at its wall time
would leave the command waiting ``mp.dask.worker_timeout`` seconds for a
worker that cannot come: these helpers let it stop at once with SLURM's reason.
"""

from __future__ import annotations

import subprocess

#: States of a job that will never (again) give a worker.
ENDED = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "REVOKED",
    "SPECIAL_EXIT",
    "TIMEOUT",
}

#: What an ended state means for the user, where SLURM's name alone is terse.
MEANING = {
    "TIMEOUT": "its wall time ran out (mp.dask.walltime)",
    "CANCELLED": "scancel, or the site",
    "OUT_OF_MEMORY": "over its memory (mp.dask.memory)",
    "PREEMPTED": "preempted by another job",
    "NODE_FAIL": "its node failed",
}


def submit_error(text: str) -> str:
    """The reason in a failed submission's output, on one line.

    Args:
        text: What the submit command printed (dask-jobqueue's error message,
            which holds its stdout and stderr).

    Returns:
        sbatch's (or qsub's, bsub's) own error lines joined with "; ", without
        their ``sbatch: error:`` prefixes; else the last non-empty line.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line.split("error:", 1)[1].strip() for line in lines if "error:" in line]
    if errors:
        return "; ".join(dict.fromkeys(errors))
    return lines[-1] if lines else "no reason given"


def job_states(job_ids: list[str], timeout: float = 10.0) -> dict[str, str] | None:
    """The SLURM state of each job, as squeue gives it (ended jobs while the controller keeps them).

    Args:
        job_ids: SLURM job ids.
        timeout: Seconds to wait for squeue.

    Returns:
        ``{job_id: state}``; a job the controller no longer knows is ``"GONE"``.
        None when squeue cannot answer (controller down, squeue missing):
        the caller then knows nothing and keeps waiting.
    """
    if not job_ids:
        return {}
    cmd = ["squeue", "--noheader", "--states=all", "--format=%i %T", f"--jobs={','.join(job_ids)}"]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        # squeue refuses a list whose jobs were all purged ("Invalid job id").
        return dict.fromkeys(job_ids, "GONE") if "Invalid job id" in proc.stderr else None
    states = dict(line.split(None, 1) for line in proc.stdout.splitlines() if " " in line)
    return {j: states.get(j, "GONE").strip() for j in job_ids}


def ended_reason(states: dict[str, str]) -> str | None:
    """One phrase naming why every job ended, or None while one may still give a worker.

    Args:
        states: ``{job_id: state}`` from :func:`job_states`.
    """
    if not states or any(s not in ENDED and s != "GONE" for s in states.values()):
        return None
    parts = []
    for job, state in states.items():
        meaning = MEANING.get(state)
        if state == "GONE":
            parts.append(f"job {job} ended")
        else:
            parts.append(f"job {job} {state}" + (f": {meaning}" if meaning else ""))
    return ", ".join(parts)
