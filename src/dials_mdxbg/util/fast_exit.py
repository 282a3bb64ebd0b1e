"""Leaving a finished command without tearing the interpreter down.

Once a run has committed its outputs and closed its files, Python's own exit
still frees every module and object one by one (DIALS, cctbx, numpy, h5py):
about a tenth of a second of every run, for nothing. The console entry points
end through :func:`leave` instead: the exit functions (``atexit``: temporary
folders, multiprocessing's children) and the log handlers run, the console is
flushed, then the process ends. With a thread still running (nothing of ours
leaves one) it takes the ordinary exit, which waits for it. A stopping signal
that arrives while the process ends is ignored: the run's status is already
decided, and a traceback from inside an exit function would only hide it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
from typing import NoReturn


def exit_status(code: object) -> int:
    """The status ``sys.exit(code)`` would give (None: 0; a message: printed, 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def leave(code: object = 0) -> NoReturn:
    """End the process with ``code`` as ``sys.exit`` would, without the interpreter's teardown."""
    main = threading.main_thread()
    if any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    status = exit_status(code)
    if threading.current_thread() is main:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
