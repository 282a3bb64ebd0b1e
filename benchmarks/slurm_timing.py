"""Wall times of the same small run in this process, on a local dask cluster and through SLURM.

    python benchmarks/slurm_timing.py [--test-cluster] [--repeat 3] [--frames 12]

``--test-cluster`` starts the tests' private one-node SLURM
(tests/slurm_cluster.py, root and slurm-wlm needed) for the run; without it
the SLURM in the environment is used (``sbatch`` on PATH, ``SLURM_CONF``),
with ``--partition``. Prints one line per mode and command: the median of
the repeats, in seconds, from start to exit of the command.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TESTS = Path(__file__).resolve().parent.parent / "tests"


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    """Seconds the command took (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-cluster", action="store_true")
    parser.add_argument("--partition", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--frames", type=int, default=12)
    args = parser.parse_args()
    from dials_mdxbg.testing.pilatus import SweepSpec, make_background_sweep

    cluster = None
    env = dict(os.environ, NO_COLOR="1")
    partition = args.partition
    if args.test_cluster:
        sys.path.insert(0, str(TESTS))
        from slurm_cluster import PARTITION, OneNodeSlurm

        cluster = OneNodeSlurm()
        cluster.start()
        env.update(cluster.env)
        partition = PARTITION
    slurm = ["mp.method=dask", "mp.dask.cluster=slurm", "mp.dask.cores=1", "mp.dask.memory=1GB"]
    slurm += [f"mp.dask.queue={partition}"] if partition else []
    modes = {
        "mp.nproc=1": ["mp.nproc=1"],
        "dask local (mp.nproc=2)": ["mp.method=dask", "mp.nproc=2"],
        "SLURM, 1 job": [*slurm, "mp.dask.njobs=1"],
        "SLURM, 2 jobs": [*slurm, "mp.dask.njobs=2"],
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            spec = SweepSpec(n_frames=args.frames, modules=(3, 2), seed=3)
            expt = make_background_sweep(work / "sweep", spec)
            print(f"sweep: {args.frames} frames of 1475 x 407 px; median of {args.repeat} runs")
            for mode, options in modes.items():
                imp = [str(BIN / "dials.mdx_import"), str(expt), "output.data=d.nxs", *options]
                binning = [str(BIN / "dials.mdx_bin_background"), "d.nxs", "bins=4,20,20"]
                binning += ["output.plot=None", "output.binned=b.nxs", *options]
                times = {"import": [], "bin (series)": []}
                for _ in range(args.repeat):
                    for f in work.glob("[db].*"):
                        f.unlink()
                    times["import"].append(timed(imp, work, env))
                    times["bin (series)"].append(timed(binning, work, env))
                for what, t in times.items():
                    print(f"{mode:26s} {what:13s} {statistics.median(t):6.1f} s")
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
