"""A stopping signal that library code swallows still ends the run as an interruption.

CI and a loaded machine caught Ctrl-C landing inside an import's module-lock
callback: Python could not raise it there (it printed a traceback as an
unraisable error), numpy was left half-made, and the run ended as an
"unexpected failure" with exit 1.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

PRELUDE = """
import signal
from dials_mdxbg.util import signals
from dials_mdxbg.util.exits import handle_errors

def signal_swallowed_by_a_library():
    try:
        signals._stop(signal.SIGINT, None)  # what the handler does when Ctrl-C lands
    except KeyboardInterrupt:
        pass
"""


def _run(body: str, tmp_path) -> subprocess.CompletedProcess:
    code = PRELUDE + "with handle_errors('dials.mdx_test'):\n" + textwrap.indent(body, "    ")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)  # fmt: skip


LINE = (
    "dials.mdx_test: error: interrupted by SIGINT (Ctrl-C); no output written, nothing else changed"
)


def test_failure_after_a_swallowed_signal_is_the_interruption(tmp_path):
    proc = _run(
        "signal_swallowed_by_a_library()\n"
        "raise AttributeError(\"module 'numpy' has no attribute 'matrix'\")\n",
        tmp_path,
    )
    assert (proc.returncode, proc.stderr.splitlines()) == (130, [LINE]), proc.stderr


def test_signal_in_a_finaliser_prints_nothing_and_the_commit_stops(tmp_path):
    proc = _run(
        "class Lock:\n"
        "    def __del__(self):\n"
        "        signals._stop(signal.SIGINT, None)  # Ctrl-C inside a weakref/finaliser\n"
        "Lock()\n"  # Python cannot raise it here: the unraisable hook gets it
        "signals.raise_if_interrupted()  # what every commit asks first\n"
        "print('committed')\n",
        tmp_path,
    )
    assert (proc.returncode, proc.stderr.splitlines()) == (130, [LINE]), proc.stderr
    assert proc.stdout == ""


def test_failure_without_a_signal_is_still_a_bug(tmp_path):
    proc = _run("raise AttributeError('no such thing')\n", tmp_path)
    assert proc.returncode == 1
    assert "unexpected failure (no such thing)" in proc.stderr
