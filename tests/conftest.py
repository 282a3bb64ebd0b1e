"""Shared fixtures: small synthetic Pilatus sweeps, and running commands as a user does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dials_mdxbg.testing.pilatus import SweepSpec, make_background_sweep

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session", autouse=True)
def _own_cache(tmp_path_factory):
    """The runs' packed plotly.js cache in the session's folder, not the user's (nor shared)."""
    previous = os.environ.get("DIALS_MDXBG_CACHE")
    os.environ["DIALS_MDXBG_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("DIALS_MDXBG_CACHE", None)
    else:
        os.environ["DIALS_MDXBG_CACHE"] = previous


def run(
    cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None, **kw
) -> subprocess.CompletedProcess:
    """Run a console script from this environment, as a user would (``env``: extra variables)."""
    exe = shutil.which(cmd[0], path=str(BIN)) or cmd[0]
    env = dict(os.environ, NO_COLOR="1", **(env or {}))
    proc = subprocess.run(
        [exe, *map(str, cmd[1:])],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        **kw,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def read_series(path: Path) -> dict[str, np.ndarray]:
    """All datasets of /entry/image_series, read through HDF5's own filters."""
    with h5py.File(path, "r") as f:
        g = f["entry/image_series"]
        return {k: g[k][()] for k in ("data", "phi", "iy", "ix", "exposure_times")}


def read_binned(path: Path) -> dict[str, np.ndarray]:
    """All datasets of /entry/binned_image_series."""
    with h5py.File(path, "r") as f:
        g = f["entry/binned_image_series"]
        return {k: g[k][()] for k in g}


def bin_map(cwd: Path, source, name: str, *options: str, **kw) -> Path:
    """Run dials.mdx_bin_background on ``source`` with ``options``, no plot, into ``<name>.nxs``.

    Args:
        cwd: Working directory (the map is written there).
        source: An image series or an experiment list.
        name: Stem of the map file.
        *options: Further PHIL arguments.
        **kw: Passed on to :func:`run` (e.g. ``env``).

    Returns:
        The map's path.
    """
    cmd = ["dials.mdx_bin_background", source, *options]
    run([*cmd, "output.plot=None", f"output.binned={name}.nxs"], cwd=cwd, **kw)
    return cwd / f"{name}.nxs"


def mdx2_bin(series: Path, outfile: Path | str, cwd: Path) -> None:
    """Run mdx2.bin_image_series on ``series``: bins 4 x 20 x 20, valid range 0-200."""
    bins, valid = ("4", "20", "20"), ("0", "200")
    run(
        ["mdx2.bin_image_series", series, *bins, "--valid_range", *valid, "--outfile", outfile],
        cwd=cwd,
    )


#: The ``sweep`` fixture: 12 frames of 3x2 modules (1475 x 407 px, gaps, hot pixels, overloads).
SWEEP = SweepSpec(
    n_frames=12, modules=(3, 2), osc_start=5.0, osc_width=1.0, exposure_time=0.5, seed=3
)
#: The ``small_sweep`` fixture: 7 frames of one module (487 x 195 px), 0.25 degree frames.
SMALL_SWEEP = SweepSpec(
    n_frames=7, modules=(1, 1), osc_width=0.25, exposure_time=2.0, seed=11, n_overload=20
)


def made_sweep(tmp_path_factory, name: str, spec: SweepSpec) -> Path:
    """Write the sweep of ``spec`` in a new folder ``name`` and dials.import it (the .expt)."""
    return make_background_sweep(tmp_path_factory.mktemp(name), spec)


@pytest.fixture(scope="session")
def sweep(tmp_path_factory) -> Path:
    """A 12-frame 3x2-module Pilatus sweep (1475 x 407 px, gaps, hot pixels, overloads)."""
    return made_sweep(tmp_path_factory, "sweep", SWEEP)


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory) -> Path:
    """A 7-frame single-module sweep (487 x 195 px) with 0.25 degree frames."""
    return made_sweep(tmp_path_factory, "small", SMALL_SWEEP)


@pytest.fixture(scope="session")
def mdx2_import(sweep, tmp_path_factory) -> Path:
    """mdx2.import_data's image series of ``sweep`` (virtual dataset + datastore)."""
    work = tmp_path_factory.mktemp("mdx2_import")
    run(
        ["mdx2.import_data", sweep, "--outfile", "mdx.nxs", "--chunks", "5", "211", "493"], cwd=work
    )
    return work / "mdx.nxs"


@pytest.fixture(scope="session")
def our_import(sweep, tmp_path_factory) -> Path:
    """dials.mdx_import's image series of ``sweep`` with the same chunks."""
    work = tmp_path_factory.mktemp("our_import")
    run(
        [
            "dials.mdx_import",
            sweep,
            "output.data=ours.nxs",
            "chunks=5,211,493",
            "output.json=ours.json",
        ],
        cwd=work,
    )
    return work / "ours.nxs"


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real one-node SLURM on 127.0.0.1 (tests/slurm_cluster.py); skips where none can run."""
    from slurm_cluster import OneNodeSlurm, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    cluster = OneNodeSlurm()
    try:
        cluster.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        cluster.stop()
        pytest.skip(f"no test SLURM cluster: {e}")
    try:
        yield cluster
    finally:
        cluster.stop()
