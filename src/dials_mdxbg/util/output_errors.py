"""One-line errors for outputs that cannot be written, and the free-space guard.

Running out of space (or an I/O error) while writing becomes one
:class:`~dials_mdxbg.errors.OutputError` line naming the output, never a
traceback. HDF5 1.10 must never see a full disk: once its metadata cache
fails to flush, closing the file corrupts the library and the process
segfaults at exit. So HDF5 writers check the free space before they write
(:func:`ensure_space`), and if HDF5 still hits ENOSPC :data:`hdf5_failed`
tells the command to leave with ``os._exit``.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import tempfile
from pathlib import Path

from dials_mdxbg.errors import OutputError
from dials_mdxbg.util.targets import output_target
from dials_mdxbg.util.tempnames import TEMPORARY, full_name

__all__ = ["TEMPORARY"]  # re-exported: atomic and its tests name it here

SPACE_MARGIN = 1 << 20
"""Bytes kept free beyond what an HDF5 write needs, for the metadata HDF5 flushes at close."""

_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}

hdf5_failed = False
"""Set when HDF5 itself hit a full disk: its state is then unsafe to tear down at exit."""


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def free_bytes(path: Path) -> int:
    """Free bytes for an unprivileged writer on the file system holding ``path``."""
    directory = Path(path).absolute().parent
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def final_name(path: Path) -> Path:
    """The name a temporary (or a file inside a temporary folder) will have when committed."""
    parts = []
    for part in Path(path).absolute().parts:
        match = TEMPORARY.match(part)
        parts.append(full_name(match["name"]) if match else part)
    return Path(*parts)


def ensure_space(path: Path, nbytes: int, margin: int = SPACE_MARGIN) -> None:
    """Raise :class:`OutputError` unless ``nbytes`` (plus ``margin``) fit beside ``path``.

    Also within the process's file-size limit (``ulimit -f``): past it a write
    fails with EFBIG, which HDF5 must never meet either.
    """
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        try:
            size = os.stat(path).st_size
        except OSError:
            size = 0
        if size + nbytes + margin > limit:
            raise OutputError(
                f"cannot write {final_name(path)}: it would pass this process's file-size "
                f"limit of {_mb(limit)} (ulimit -f); raise the limit or write elsewhere"
            )
    free = free_bytes(path)
    if free < nbytes + margin:
        raise OutputError(
            f"not enough space for {final_name(path)}: needs about {_mb(nbytes + margin)} "
            f"more, {_mb(free)} free; free some space or write the output elsewhere"
        )


def output_error(error: OSError, final: Path) -> OutputError | None:
    """The one-line error for a failed write of ``final``, or None if it is not an I/O one."""
    global hdf5_failed
    code, text = getattr(error, "errno", None), str(error)
    final = final_name(final)
    where = final.parent
    if _is_stream(final):
        return _stream_error(error, final)
    too_large = code == errno.EFBIG or "File too large" in text
    if too_large or code in _SPACE_ERRNOS or "No space left" in text or "quota" in text.lower():
        if "file write failed" in text or "Can't" in text:
            hdf5_failed = True
        if too_large:
            return OutputError(
                f"cannot write {final}: it would pass this process's file-size limit "
                "(ulimit -f); raise the limit or write less (fewer frames per output)"
            )
        return OutputError(_space_message(error, final))
    if code == errno.EROFS or "Read-only file system" in text:
        return OutputError(f"cannot write {final.name}: {where} is on a read-only file system")
    if code in (errno.EACCES, errno.EPERM):
        return OutputError(f"cannot write {final.name}: permission denied in {where}")
    if code == errno.EIO:
        return OutputError(f"I/O error while writing {final}; check the disk, then run again")
    return None


def _space_message(error: OSError, final: Path) -> str:
    """Which file system is full, and of what: bytes, inodes, or the temporary directory's."""
    where = final.parent
    if getattr(error, "errno", None) == errno.ENOSPC:
        if _no_inodes(where):
            return (
                f"no free inodes left for {final.name} in {where}: its file system holds as "
                "many files as it can (space is not the problem); delete files there or write "
                "the output elsewhere"
            )
        staged = _full_tmp(error, where)
        if staged:
            return staged
    try:
        free = f"{_mb(free_bytes(final))} free"
    except OSError:
        free = "no free space"
    return (
        f"no space left for {final.name} in {where} ({free}); free some space or write the "
        "output elsewhere"
    )


def _statvfs(directory: Path) -> os.statvfs_result | None:
    try:
        return os.statvfs(directory)
    except OSError:
        return None


def _inodes_out(st: os.statvfs_result | None) -> bool:
    return st is not None and st.f_files > 0 and st.f_favail == 0  # f_files 0: none counted


def _bytes_free(st: os.statvfs_result | None) -> int:
    return 0 if st is None else st.f_bavail * st.f_frsize


def _no_inodes(directory: Path) -> bool:
    return _inodes_out(_statvfs(directory))


def _full_tmp(error: OSError, where: Path | None) -> str | None:
    """The message for a full temporary directory, if that is what ran out, else None.

    What failed was there (a stream output is staged there: ``where`` None),
    or it is full while the output's own file system (``where``) has room
    (other code writing to TMPDIR).
    """
    tmp = Path(tempfile.gettempdir())
    name = getattr(error, "filename", None)
    there = name is not None and Path(name).absolute().is_relative_to(tmp.absolute())
    st = _statvfs(tmp)
    if st is None:
        return None
    full = _bytes_free(st) < SPACE_MARGIN or _inodes_out(st)
    roomy = where is None or (not _no_inodes(where) and _free(where) > SPACE_MARGIN)
    if not (there or (full and roomy)):
        return None
    what = "no free inodes" if _inodes_out(st) else f"{_mb(_bytes_free(st))} free"
    return (
        f"the temporary directory {tmp} is full ({what}); free space there or point TMPDIR "
        "at a folder with room"
    )


def _free(directory: Path) -> int:
    return _bytes_free(_statvfs(directory))


def named_in(error: OSError) -> Path | None:
    """The file a failed write names: its filename, or the name in HDF5's message."""
    if getattr(error, "filename", None):
        return Path(error.filename)
    match = re.search(r"name = '([^']+)'", str(error))
    return Path(match[1]) if match else None


def _is_stream(final: Path) -> bool:
    try:
        return output_target(final).stream
    except OSError:
        return False


def _stream_error(error: OSError, final: Path) -> OutputError | None:
    code = getattr(error, "errno", None)
    if code in _SPACE_ERRNOS:
        staged = _full_tmp(error, None) if code == errno.ENOSPC else None  # staged in TMPDIR
        return OutputError(staged or f"cannot write {final}: no space left on the device")
    if code == errno.EPIPE:
        return OutputError(f"cannot write {final}: its reader closed it")
    if code == errno.ENXIO:
        return OutputError(f"cannot write {final}: no process is reading it")
    if code in (errno.EACCES, errno.EPERM):
        return OutputError(f"cannot write {final}: permission denied")
    if code is not None:
        return OutputError(f"cannot write {final}: {os.strerror(code).lower()}")
    return None
