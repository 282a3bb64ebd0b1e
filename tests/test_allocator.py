"""The allocator tuning the commands apply at start-up (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

# Frame-sized buffers taken and freed three times, as a frame's reading and
# compression do; prints the page faults of the second and third rounds.
ROUNDS = """
import resource, numpy as np
{setup}
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for _ in range(3):
    f0 = faults()
    blocks = [np.ones(n, np.uint8) for n in (7_000_000, 25_000_000, 25_000_000, 4_000_000)]
    del blocks
    counts.append(faults() - f0)
print(counts[1] + counts[2])
"""


def _faults(setup: str) -> int:
    code = ROUNDS.format(setup=setup)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


PREPARE = "from dials_mdxbg.util.startup import prepare; prepare()"


def test_commands_reuse_freed_frame_buffers():
    # The start-up every dials.mdx_* run() does first applies it.
    assert _faults(PREPARE) < 200
    # Without it glibc hands the pages back and faults them in again each round.
    assert _faults("") > 1000


def test_importing_the_package_changes_nothing():
    # Only run() prepares the process: importing every module is free of side effects.
    setup = (
        "import os, sys; env = dict(os.environ)\n"
        "import dials_mdxbg.command_line.mdx_import, dials_mdxbg.command_line.mdx_bin_background\n"
        "import dials_mdxbg.jobs.import_sweep, dials_mdxbg.jobs.bin_background\n"
        "assert dict(os.environ) == env\n"
        "assert 'hdf5plugin' not in sys.modules and 'sklearn' not in sys.modules\n"
    )
    assert _faults(setup) > 1000


def test_glibc_accepts_the_thresholds():
    code = "from dials_mdxbg.util import allocator; print(allocator.keep_freed_buffers())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
