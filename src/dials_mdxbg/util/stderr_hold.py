"""stderr while memory runs out: libraries' own messages held back, and an exit that cannot hang.

Only light modules are imported here: a command's entry point uses this before
it imports DIALS (and with it numpy and OpenBLAS), under a limit that may
leave room for little more.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

from dials_mdxbg.util.memory import MESSAGE as OUT_OF_MEMORY
from dials_mdxbg.util.memory import limited, out_of_memory

_held: tuple[int, int] | None = None
"""While stderr is held (:func:`hold_stderr`): the real stderr's descriptor and the holder's."""


def hold_stderr() -> None:
    """Under a memory limit, keep what is written to stderr until :func:`release_stderr`.

    When memory runs out while a command starts, libraries print on their own,
    from C: OpenBLAS that it cannot start a thread, numpy's C API a traceback,
    hdf5plugin each filter it cannot load. Held in an anonymous memory file
    (nothing on disk, and not address space the limit counts) the text is
    shown once the start-up is over, or dropped if the run fails for memory.
    Without a limit, nothing changes.
    """
    global _held
    if _held is not None or not limited():
        return
    try:
        sys.stderr.flush()
        holder = os.memfd_create("dials_mdxbg-stderr", os.MFD_CLOEXEC)
        real = os.dup(2)
        os.dup2(holder, 2)
    except (OSError, AttributeError, ValueError, MemoryError):
        return  # stderr as it is
    _held = (real, holder)


def release_stderr(show: bool = True) -> None:
    """stderr back to what it was, with what it held written to it if ``show``."""
    global _held
    if _held is None:
        return
    real, holder = _held
    _held = None
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os.dup2(real, 2)
    os.close(real)
    with contextlib.suppress(OSError):
        size = os.lseek(holder, 0, os.SEEK_END) if show else 0
        os.lseek(holder, 0, os.SEEK_SET)
        while size > 0:
            chunk = os.read(holder, min(size, 1 << 16))
            if not chunk:
                break
            os.write(2, chunk)
            size -= len(chunk)
    os.close(holder)


def exit_now(line: str, code: int) -> None:
    """Write ``line`` to stderr and end the process without the usual exit.

    Skipped are Python's join of its threads and the C libraries' exit
    handlers: when memory ran out, an OpenBLAS thread that could not map its
    work buffer retries forever, and OpenBLAS's exit handler joins it (the
    hang of issue 19); a pool thread may be stuck the same way.
    """
    with contextlib.suppress(Exception):
        logging.shutdown()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    with contextlib.suppress(Exception):
        os.write(2, (line + "\n").encode())  # not through Python's buffer
    os._exit(code)


def import_failed(error: Exception, command: str) -> None:
    """A command module that could not be imported: one line if memory ran out.

    Anything else (a broken installation) is raised as Python reports it.
    """
    if out_of_memory(error):
        release_stderr(show=False)
        exit_now(f"{command}: error: {OUT_OF_MEMORY}", 1)
    release_stderr()
    raise error
