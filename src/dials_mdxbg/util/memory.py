"""Running out of memory, recognised wherever it happens and said as such.

Under a memory limit (``ulimit -v``, a batch scheduler's) the allocation that
fails can be anywhere: Python's ``MemoryError``, numpy's "Unable to allocate",
HDF5's "memory allocation failed", a shared library that cannot be mapped at
import, or DIALS' parser, which catches the error and blames the file it was
reading. None of these is bad input or a bug, and none must blame an input.
"""

from __future__ import annotations

import mmap
import re
import resource

_SIGNS = re.compile(
    r"\bMemoryError\b|failed to map segment|Cannot allocate memory|memory allocation failed"
    r"|std::bad_alloc|Unable to allocate [\d.]+ [KMGT]?i?B",
    re.IGNORECASE,
)
"""What the failed allocations above say (in a message, or in a traceback DIALS quotes)."""

_NO_THREAD = re.compile(r"can't start new thread")
"""Python's error for a thread it could not create (under a limit: no room for its stack)."""

MESSAGE = (
    "out of memory: the process could not allocate more memory (a memory limit such as "
    "ulimit -v, or the machine is full); raise the limit, run fewer processes (mp.nproc=) "
    "or use a machine with more memory; nothing was written"
)


BLAS_BUFFER = (128 << 20) + (1 << 20)
"""Address space OpenBLAS maps for a work buffer (128 MiB in Debian 12's 0.3.21), and slack."""


def out_of_memory(error: BaseException | None) -> bool:
    """Whether ``error`` (or what caused it) is a failed allocation."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, MemoryError) or _SIGNS.search(str(error)):
            return True
        if isinstance(error, SystemError) and limited():  # a C extension's failed allocation
            return True
        if _NO_THREAD.search(str(error)) and limited():  # no room for the thread's stack
            return True
        error = error.__cause__ or error.__context__
    return False


def parser_ran_out(parser) -> bool:
    """Whether DIALS' parser failed reading an argument because memory ran out.

    Its error names the file it was reading ("failed during reading"); the
    exception it caught says what really happened.
    """
    errors = getattr(getattr(parser, "_phil_parser", None), "handling_errors", None) or {}
    return any(
        out_of_memory(getattr(info, "exception", None))
        or _SIGNS.search(info.traceback or "")
        for infos in errors.values()
        for info in infos
    )


def limited() -> bool:
    """Whether this process runs under an address-space or data-size limit.

    Under one, a C extension that fails to allocate may say only "error return
    without exception set" (a SystemError); without one, that is a bug.
    """
    return any(
        resource.getrlimit(which)[0] != resource.RLIM_INFINITY
        for which in (resource.RLIMIT_AS, resource.RLIMIT_DATA)
    )


def room_for_blas() -> None:
    """Have OpenBLAS map this thread's work buffer now, or raise ``MemoryError`` (under a limit).

    OpenBLAS maps a thread's 128 MiB work buffer on its first BLAS or LAPACK call
    (and keeps it for the next ones) but, when that mapping fails, retries
    forever (a busy loop, issue 19): a matplotlib figure (``numpy.linalg.inv``
    of its transforms) under a tight ``ulimit -v`` then hung the run. Called
    before such a step: if the address space is there, a tiny LAPACK call maps
    the buffer at once; if not, the run fails with the one out-of-memory line.
    """
    if not limited():
        return
    import numpy as np

    try:
        probe = mmap.mmap(-1, BLAS_BUFFER)  # address space only: never touched
    except (OSError, ValueError):
        raise MemoryError("no room for OpenBLAS's work buffer") from None
    probe.close()
    np.linalg.inv(np.eye(2))  # maps the buffer while there is room for it
