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


_SIGNAL_IN_IMPORT = """
import signal, sys
from dials_mdxbg.util import signals

class SignalDuring:  # one Ctrl-C, landing while Python imports {module}
    sent = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "{module}" and not self.sent:
            self.sent = True
            raise signals.Interrupted(signal.SIGINT)

sys.meta_path.insert(0, SignalDuring())
from dials_mdxbg.command_line.entry import mdx_bin_background
mdx_bin_background()
"""


@pytest.mark.parametrize(
    "module",
    [
        "dials_mdxbg.util.stderr_hold",
        "dials_mdxbg.util.fast_exit",
        "dials_mdxbg.command_line.mdx_bin_background",
    ],
)
def test_signal_in_any_import_of_the_entry_point_is_one_line(module, tmp_path):
    """CI caught a Ctrl-C inside the entry point's import of fast_exit printing a traceback."""
    proc = subprocess.run(
        [sys.executable, "-c", _SIGNAL_IN_IMPORT.format(module=module)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.splitlines() == [
        "dials.mdx_bin_background: error: interrupted by SIGINT (Ctrl-C); "
        "no output written, nothing else changed"
    ]
    assert list(tmp_path.iterdir()) == []


def test_signal_before_the_command_handles_signals_is_one_line(tmp_path):
    code = (
        "import signal\n"
        "from dials_mdxbg.util import signals\n"
        "import dials_mdxbg.command_line.mdx_bin_background as command\n"
        "def run():\n    raise signals.Interrupted(signal.SIGTERM)\n"
        "command.run = run\n"
        "from dials_mdxbg.command_line.entry import mdx_bin_background\n"
        "mdx_bin_background()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 128 + 15, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "interrupted by SIGTERM" in proc.stderr


def test_signal_while_leaving_keeps_the_status():
    proc = _python(
        "import os, signal\n"
        "from dials_mdxbg.util import signals\n"
        "signals.install()\n"
        "atexit.register(lambda: print('exit functions finished'))\n"
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.2)))\n"
        "leave(0)\n"
    )
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert proc.stdout == "exit functions finished\n"


_SIGNAL_TURNED_INTO_ERROR = """
import signal, sys
from dials_mdxbg.util import signals

class SignalDuring:  # Ctrl-C in a class body: Python raises RuntimeError from it
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "dials_mdxbg.command_line.common":
            sys.meta_path.remove(self)
            try:
                signals._stop(signal.SIGINT, None)
            except KeyboardInterrupt as e:
                raise RuntimeError("Error calling __set_name__ on 'cached_property'") from e

signals.install()
sys.meta_path.insert(0, SignalDuring())
from dials_mdxbg.command_line.entry import mdx_bin_background
mdx_bin_background()
"""

_SIGNAL_BEFORE_INSTALL = """
import sys

class SignalDuring:  # Ctrl-C under Python's own handler, while signals is imported
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "dials_mdxbg.util.signals":
            sys.meta_path.remove(self)
            raise KeyboardInterrupt

sys.meta_path.insert(0, SignalDuring())
from dials_mdxbg.command_line.entry import mdx_bin_background
mdx_bin_background()
"""


@pytest.mark.parametrize(
    "code",
    [_SIGNAL_TURNED_INTO_ERROR, _SIGNAL_BEFORE_INSTALL],
    ids=["into_error", "before_install"],
)
def test_signal_python_reports_otherwise_is_one_line(code, tmp_path):
    """A stress run of 120 Ctrl-Cs at random moments found both (exit 1 and -2, tracebacks)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "interrupted by SIGINT" in proc.stderr
    assert list(tmp_path.iterdir()) == []
