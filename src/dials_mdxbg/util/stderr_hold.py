"""stderr while memory runs out: libraries' own messages held back, and an exit that cannot hang.

Only light modules are imported here: a command's entry point uses this before
it imports DIALS (and with it numpy and OpenBLAS), under a limit that may
leave room for little more.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys

from dials_mdxbg.util.memory import MESSAGE as OUT_OF_MEMORY
from dials_mdxbg.util.memory import limited, out_of_memory

_LOADER_OOM = re.compile(rb"(^|: )out of memory\n\Z")
"""The dynamic loader's last words when it cannot map a library (it then exits with 127)."""

_held: tuple[int, int, int, int] | None = None
"""While stderr is held (:func:`hold_stderr`): the real stderr's descriptor, the holder's,
the watcher's pid and the pipe that tells it the text was dealt with."""


def hold_stderr(command: str) -> None:
    """Under a memory limit, keep what is written to stderr until :func:`release_stderr`.

    When memory runs out while a command starts, libraries print on their own,
    from C: OpenBLAS that it cannot start a thread, numpy's C API a traceback,
    hdf5plugin each filter it cannot load. Held in an anonymous memory file
    (nothing on disk, and not address space the limit counts) the text is
    shown once the start-up is over, or dropped if the run fails for memory.
    A process that ends otherwise (a crash) does not lose it: a small watcher
    process, forked here while the command is still small and single-threaded,
    writes it out when this process ends without having dealt with it, as the
    one out-of-memory line if that is what it says (the dynamic loader prints
    "out of memory" and exits with status 127 when it cannot map a library).
    Without a limit, nothing changes.
    """
    global _held
    if _held is not None or not limited():
        return
    try:
        sys.stderr.flush()
        holder = os.memfd_create("dials_mdxbg-stderr", os.MFD_CLOEXEC)
        done_r, done_w = os.pipe()  # not inherited by programs this one runs
        real = os.dup(2)
        watcher = os.fork()
    except (OSError, AttributeError, ValueError, MemoryError):
        return  # stderr as it is
    if watcher == 0:
        _watch(command, holder, real, done_r, done_w)
    os.close(done_r)
    os.dup2(holder, 2)
    _held = (real, holder, watcher, done_w)


def _watch(command: str, holder: int, real: int, done_r: int, done_w: int) -> None:
    """The watcher: wait until the command says it dealt with the held text, or ends."""
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a terminal's Ctrl-C is for the command
        os.close(done_w)
        for fd in (0, 1):  # a reader of the command's stdout sees its end with the command
            os.close(fd)
        if os.read(done_r, 1) == b"d":
            return
        text = _read(holder)  # the command ended without a word
        if _LOADER_OOM.search(text):
            text = f"{command}: error: {OUT_OF_MEMORY}\n".encode()
        _write(real, text)
    finally:
        os._exit(0)


def _write(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(fd, data) :]


def _read(holder: int) -> bytes:
    """Everything the holder holds."""
    chunks = []
    with contextlib.suppress(OSError):
        os.lseek(holder, 0, os.SEEK_SET)
        while chunk := os.read(holder, 1 << 16):
            chunks.append(chunk)
    return b"".join(chunks)


def release_stderr(show: bool = True) -> None:
    """stderr back to what it was, with what it held written to it if ``show``."""
    global _held
    if _held is None:
        return
    real, holder, watcher, done_w = _held
    _held = None
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os.dup2(real, 2)
    os.close(real)
    if show:
        _write(2, _read(holder))
    os.close(holder)
    with contextlib.suppress(OSError):
        os.write(done_w, b"d")
        os.close(done_w)
        os.waitpid(watcher, 0)


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
