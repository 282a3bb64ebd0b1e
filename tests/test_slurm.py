"""The SLURM path (``mp.dask.cluster=slurm``) on a real one-node SLURM (tests/slurm_cluster.py).

Each command runs as a subprocess with ``SLURM_CONF`` pointing at the test
cluster; dask-jobqueue submits real worker jobs with sbatch. Skipped, with
the reason, where no such cluster can run (not root, slurm-wlm missing).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import BIN, bin_map, read_binned, read_series, run
from dials_mdxbg.testing.pilatus import SweepSpec, make_background_sweep

pytest.importorskip("dask_jobqueue")

MAP_KEYS = ("signal", "errors", "pixel_count", "phi", "iy", "ix")


def slurm_args(cluster, *extra: str) -> list[str]:
    """The options of a run through the test cluster: one 1-core worker job, job output nowhere."""
    return [
        "mp.method=dask",
        "mp.dask.cluster=slurm",
        f"mp.dask.queue={cluster_partition()}",
        "mp.dask.cores=1",
        "mp.dask.memory=1GB",
        "mp.dask.worker_timeout=120",
        *extra,
    ]


def cluster_partition() -> str:
    from slurm_cluster import PARTITION

    return PARTITION


def chunks(path: Path) -> list[bytes]:
    """Every stored (compressed) chunk of the series' data, in chunk order."""
    with h5py.File(path, "r") as f:
        d = f["entry/image_series/data"]
        out = []
        for i in range(d.id.get_num_chunks()):
            offset = d.id.get_chunk_info(i).chunk_offset
            out.append(bytes(d.id.read_direct_chunk(offset)[1]))
        return out


def assert_clean(cluster, work: Path) -> None:
    """No job left in the queue and no SLURM output file in the working folder."""
    for _ in range(50):  # a cancelled job leaves squeue within KillWait
        if not cluster.jobs():
            break
        time.sleep(0.2)
    assert cluster.jobs() == []
    assert not list(work.glob("slurm-*.out"))


def test_import_and_binning_through_slurm_equal_one_process(
    sweep, our_import, slurm_cluster, tmp_path
):
    env = slurm_cluster.env
    run(
        [
            "dials.mdx_import",
            sweep,
            "output.data=s.nxs",
            "chunks=5,211,493",
            *slurm_args(slurm_cluster, "mp.dask.frames_per_task=5", "mp.dask.job_output=logs"),
        ],
        cwd=tmp_path,
        env=env,
    )
    ours, slurm = read_series(our_import), read_series(tmp_path / "s.nxs")
    for key in ours:
        assert np.array_equal(slurm[key], ours[key]), key
    assert chunks(tmp_path / "s.nxs") == chunks(our_import)
    # job_output set: the worker's own log is in that folder (written by SLURM).
    assert list((tmp_path / "logs").glob("*.err"))
    common = ["bins=4,20,20", "valid_range=0,300", "estimator=clipped_mean"]
    local = read_binned(bin_map(tmp_path, our_import, "l", *common))
    for name, source in (("series", our_import), ("sweep", sweep)):
        proc = run(
            [
                "dials.mdx_bin_background",
                source,
                *common,
                *slurm_args(slurm_cluster, "mp.dask.frames_per_task=3", "mp.dask.njobs=2"),
                "output.plot=None",
                f"output.binned={name}.nxs",
            ],
            cwd=tmp_path,
            env=env,
        )
        binned = read_binned(tmp_path / f"{name}.nxs")
        for key in MAP_KEYS:
            assert np.array_equal(binned[key], local[key], equal_nan=True), (name, key)
        # dask's own chatter (workers registering...) is for the debug log only.
        assert "dask:" not in proc.stdout and not proc.stderr.strip(), proc.stderr
    assert_clean(slurm_cluster, tmp_path)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["mp.dask.queue=nosuchpartition"], "invalid partition specified: nosuchpartition"),
        (["mp.dask.memory=100000GB"], "Memory specification can not be satisfied"),
        # The shipped preset as it is: its queue=normal is not this site's partition.
        (["mp.dask.queue=normal", "slurm_dask.phil"], "invalid partition specified: normal"),
    ],
)
def test_refused_job_fails_at_once_in_one_line(sweep, slurm_cluster, tmp_path, options, said):
    start = time.monotonic()
    proc = run(
        [
            "dials.mdx_import",
            sweep,
            "output.data=r.nxs",
            *slurm_args(slurm_cluster, "mp.dask.worker_timeout=600"),
            *options,
        ],
        cwd=tmp_path,
        env=slurm_cluster.env,
        check=False,
    )
    took = time.monotonic() - start
    err = proc.stderr.strip()
    assert proc.returncode != 0 and err.count("\n") == 0, err
    assert "sbatch refused the worker job" in err and said in err, err
    assert "mp.dask.queue, cores, memory, walltime" in err  # what to change
    assert took < 30, took  # not the 600 s worker_timeout
    assert not list(tmp_path.glob("r*.nxs")) and not list(tmp_path.glob(".r*"))
    assert_clean(slurm_cluster, tmp_path)


@pytest.fixture(scope="module")
def long_sweep(tmp_path_factory) -> Path:
    """24 frames of 3x2 modules: 12 two-frame tasks, long enough to stop a worker mid-run."""
    spec = SweepSpec(n_frames=24, modules=(3, 2), seed=7)
    return make_background_sweep(tmp_path_factory.mktemp("long"), spec)


def job_pids(cluster, job: str) -> list[int]:
    """The pids of a job's processes on the node (scontrol listpids)."""
    out = cluster.run("scontrol", "listpids", job, check=False).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:] if line.split()[0].isdigit()]


@pytest.mark.parametrize("end", ["scancel", "walltime"])
def test_worker_job_ended_mid_run_fails_in_one_line(long_sweep, slurm_cluster, tmp_path, end):
    """A worker job cancelled, or stopped by its wall time, mid-import: one line, in seconds.

    The job's processes are first paused (SIGSTOP, like a stalled node) once
    the first part is written, so that the run is surely mid-way when SLURM
    ends the job. The wall time is brought to now with ``scontrol update
    EndTime=now`` (root), SLURM's own time-limit path (state TIMEOUT): the
    shortest wall time SLURM takes is a minute.
    """
    cmd = [
        str(BIN / "dials.mdx_import"),
        str(long_sweep),
        "output.data=k.nxs",
        "chunks=2,211,493",
        *slurm_args(slurm_cluster, "mp.dask.frames_per_task=2", "mp.dask.worker_timeout=600"),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, NO_COLOR="1", **slurm_cluster.env),
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            parts = [p for p in tmp_path.iterdir() if p.name.startswith(".k_parts")]
            if parts and any(parts[0].iterdir()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        (job,) = slurm_cluster.jobs()
        for pid in job_pids(slurm_cluster, job):
            os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        if end == "scancel":
            slurm_cluster.run("scancel", job)
        else:
            slurm_cluster.run("scontrol", "update", f"JobId={job}", "EndTime=now")
        out, err = proc.communicate(timeout=120)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
    err = err.strip()
    assert proc.returncode != 0, out[-2000:]
    assert "Traceback" not in err and err.count("\n") == 0, err
    said = "CANCELLED: scancel" if end == "scancel" else "TIMEOUT: its wall time ran out"
    assert f"no dask worker is left: SLURM job {job} {said}" in err, err
    assert took < 60, took  # SLURM checks time limits every ~30 s; never worker_timeout
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert_clean(slurm_cluster, tmp_path)
