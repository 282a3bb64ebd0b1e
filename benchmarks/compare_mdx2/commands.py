"""The timed commands: mdx2's two steps and ours, with the options every run shares."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.compare_mdx2.timing import BenchmarkError

#: Run keys: (tool, step).
MDX2_IMPORT = "mdx2.import"
MDX2_BIN = "mdx2.bin"
OURS_IMPORT = "ours.import"
OURS_BIN = "ours.bin"
OURS_ONESTEP = "ours.onestep"
MDX2_TWO_STEP = "mdx2.two_step"  # derived: MDX2_IMPORT + MDX2_BIN
#: The keys that are run (the two-step one is derived from two of them).
TIMED = (MDX2_IMPORT, MDX2_BIN, OURS_IMPORT, OURS_BIN, OURS_ONESTEP)


def executable(name: str) -> str:
    """Find a console script, preferring the running interpreter's environment.

    Args:
        name: Command name.

    Returns:
        Absolute path.

    Raises:
        BenchmarkError: If it is not found.
    """
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise BenchmarkError(f"command not found: {name} (activate the environment first)")
    return found


@dataclass
class Settings:
    """Command options shared by all runs.

    Attributes:
        chunks: HDF5 chunks of the image series (frames, y, x).
        bins: Bin size (frames, y, x).
        valid_range: Inclusive valid count range.
    """

    chunks: tuple[int, int, int]
    bins: tuple[int, int, int]
    valid_range: tuple[int, int]


def _mdx2_cmd(program: str, *args: str | int, nproc: int) -> list[str]:
    """An mdx2 command line: ``program``, its arguments as strings, then ``--nproc``."""
    return [executable(program), *(str(a) for a in args), "--nproc", str(nproc)]


def mdx2_import_cmd(expt: Path, s: Settings, nproc: int) -> list[str]:
    """``mdx2.import_data`` writing ``M.nxs`` (+ ``datastore/``)."""
    return _mdx2_cmd(
        "mdx2.import_data", str(expt), "--outfile", "M.nxs", "--chunks", *s.chunks, nproc=nproc
    )


def ours_import_cmd(expt: Path, s: Settings, nproc: int) -> list[str]:
    """``dials.mdx_import`` writing ``X.nxs``."""
    return [
        executable("dials.mdx_import"),
        str(expt),
        "output.data=X.nxs",
        "chunks=" + ",".join(str(c) for c in s.chunks),
        f"mp.nproc={nproc}",
        "output.json=X.json",
    ]


def mdx2_bin_cmd(series: Path, s: Settings, nproc: int) -> list[str]:
    """``mdx2.bin_image_series`` writing ``MB.nxs``."""
    return _mdx2_cmd(
        "mdx2.bin_image_series",
        str(series),
        *s.bins,
        "--valid_range",
        *s.valid_range,
        "--outfile",
        "MB.nxs",
        nproc=nproc,
    )


def ours_bin_cmd(source: Path, out_name: str, s: Settings, nproc: int) -> list[str]:
    """``dials.mdx_bin_background`` on an image series or (one step) an experiment list."""
    return [
        executable("dials.mdx_bin_background"),
        str(source),
        "bins=" + ",".join(str(b) for b in s.bins),
        "valid_range=" + ",".join(str(v) for v in s.valid_range),
        f"output.binned={out_name}",
        "output.plot=None",  # mdx2 makes neither picture nor report
        "output.html=None",
        f"mp.nproc={nproc}",
    ]
