"""Keep glibc from returning frame-sized buffers to the kernel after every frame.

Each frame passes through several 7-25 MB buffers (dxtbx's file bytes and
pixel array, our compressed output). glibc serves such sizes with mmap and
unmaps them on free, so every frame costs ~15 000 fresh zero-filled pages:
measured on a 50-frame 6M import, 0.8 s of the 3.7 s went to page faults.
Raising the mmap threshold to its maximum (32 MB) and the trim threshold
keeps freed buffers in the heap for the next frame: 0.35 s of system time,
the same peak memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper limit on 64-bit
TRIM_THRESHOLD = 512 * 1024 * 1024


def keep_freed_buffers() -> bool:
    """Apply the thresholds (glibc only); True if glibc accepted them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (e.g. musl): nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def small_pages() -> None:
    """Stop numpy asking for transparent huge pages for its large arrays, from here on.

    The shell model touches a few hundred MB of arrays once or twice. Where
    freed memory goes back to a virtual machine's host, a fresh huge page
    costs the process several times what the same megabytes of 4 KiB pages
    do (system time; docs/models.md "Cost"), and streaming over an array
    gains little from huge pages.
    """
    import numpy as np

    setter = getattr(np.core.multiarray, "_set_madvise_hugepage", None)
    if setter is not None:
        setter(False)
