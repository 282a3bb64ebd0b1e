"""The console entry points end without the interpreter's teardown, losing nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import read_binned, run

_PRELUDE = "import atexit, sys, threading, time\nfrom dials_mdxbg.util.fast_exit import leave\n"


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _PRELUDE + code], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("code", "status", "err"),
    [(0, 0, ""), (3, 3, ""), (None, 0, ""), ("no such file", 1, "no such file")],
)
def test_leave_runs_exit_functions_flushes_and_keeps_the_status(code, status, err):
    proc = _python(
        "atexit.register(lambda: print('exit functions ran'))\n"
        "print('buffered', end='')\n"
        f"leave({code!r})\n"
    )
    assert proc.returncode == status
    assert proc.stdout == "bufferedexit functions ran\n"
    assert proc.stderr.strip() == err


def test_leave_waits_for_a_running_thread():
    proc = _python(
        "def late():\n    time.sleep(0.3)\n    print('thread finished', flush=True)\n"
        "threading.Thread(target=late).start()\n"
        "leave(4)\n"
    )
    assert proc.returncode == 4 and proc.stdout == "thread finished\n", proc


def test_finished_command_leaves_complete_outputs_log_and_console(sweep, tmp_path):
    proc = run(
        ["dials.mdx_bin_background", sweep, "bins=4,20,20",
         "output.binned=b.nxs", "output.plot=None"],
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout.rstrip().splitlines()[-1].startswith("done in")
    log = (tmp_path / "dials.mdx_bin_background.log").read_text()
    assert log.rstrip().splitlines()[-1].startswith("done in")
    binned = read_binned(tmp_path / "b.nxs")  # readable, whole
    assert binned["signal"].shape[0] == 3 and binned["pixel_count"].sum() > 0
    assert (tmp_path / "b.json").exists() and (tmp_path / "b.html").exists()
    assert not list(tmp_path.glob(".*part*"))
