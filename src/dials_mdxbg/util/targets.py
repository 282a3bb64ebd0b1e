"""Where an output really goes: a file renamed into place, or a stream written into.

Outputs are written under a temporary name and renamed over the target when
complete (:mod:`dials_mdxbg.util.atomic`). That is right for regular files and
wrong for everything else: as root, a rename replaces ``/dev/null`` or a FIFO
with a regular file, and replaces the ``/dev/stdout`` link so that the output
never reaches the pipe that was meant to read it. So each output is
classified first:

* a regular file, new or existing, possibly behind symlinks: the temporary is
  made beside the *link's target* and renamed over it, so the link stays;
* a character or block device, a FIFO or a socket (or a link to one), or any
  path whose links pass through ``/proc`` (``/dev/stdout``, ``/dev/fd/N``):
  a *stream*. The temporary is made in the temporary directory and its bytes
  are written into the stream at commit, which is never renamed over. A link
  to one of our own file descriptors (``/dev/stdout``) is written through
  that descriptor, so it continues where the console output stopped.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

_MAX_LINKS = 40  # as the kernel's ELOOP limit
_OWN_FD = re.compile(r"^/proc/(?:self|thread-self|(?P<pid>\d+))/fd/(?P<fd>\d+)$")


class LinkLoop(OSError):
    """A chain of symbolic links that never ends."""


@dataclass(frozen=True)
class Target:
    """Where an output ends up.

    Attributes:
        path: the file to rename over (a regular file, links followed), or the
            stream's own path as given.
        stream: written into (a device, FIFO, socket or ``/proc`` link), never renamed over.
        fd: for a link to one of this process's descriptors, that descriptor.
    """

    path: Path
    stream: bool = False
    fd: int | None = None


def _follow(path: Path) -> tuple[Path, bool]:
    """The end of ``path``'s chain of links, and whether the chain passed through /proc.

    '..' is followed as the kernel does, after the links before it (never
    dropped with the folder before it: ``link/../b.nxs`` is beside the link's target).
    """
    p = Path.cwd() / path
    for _ in range(_MAX_LINKS):
        p = Path(os.path.realpath(p.parent)) / p.name
        if p.parts[1:2] == ("proc",):
            return p, True
        if not os.path.islink(p):  # (a name too long is no link: location_problem says why)
            return p, False
        p = p.parent / os.readlink(p)
    raise LinkLoop(errno.ELOOP, "too many levels of symbolic links", str(path))


def output_target(final: str | os.PathLike) -> Target:
    """Classify an output (see the module docstring). Raises :class:`LinkLoop`."""
    end, through_proc = _follow(Path(final))
    if through_proc:
        match = _OWN_FD.match(str(end))
        own = match and (match["pid"] is None or int(match["pid"]) == os.getpid())
        return Target(Path(final), stream=True, fd=int(match["fd"]) if own else None)
    try:
        mode = os.lstat(end).st_mode
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
            return Target(end)  # a new file (or a dangling link's target; a name too long)
        raise
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return Target(end)
    return Target(Path(final), stream=True)


def stream_problem(target: Target) -> str | None:
    """Why a stream cannot be written, or None (checked before any work)."""
    if target.fd is not None:
        try:
            flags = fcntl.fcntl(target.fd, fcntl.F_GETFL)
        except OSError:
            return f"{target.path}: file descriptor {target.fd} is not open"
        if flags & os.O_ACCMODE == os.O_RDONLY:
            return f"{target.path}: file descriptor {target.fd} is not open for writing"
        return None
    if not os.access(target.path, os.W_OK):
        return f"{target.path} is not writable"
    return None


def write_stream(source: Path, target: Target, block: int = 1 << 20) -> None:
    """Copy the complete temporary ``source`` into the stream ``target``.

    Raises:
        OSError: as the write fails (ENOSPC from a full device, EPIPE when the
            reader went away, ENXIO for a FIFO nobody reads).
    """
    if target.fd is not None:
        for stream in (sys.stdout, sys.stderr):  # the console lines come first
            stream.flush()
        fd, close = target.fd, False
    else:
        fd, close = _open_stream(target.path), True
    try:
        with open(source, "rb") as f:
            while chunk := f.read(block):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
    finally:
        if close:
            os.close(fd)


def _open_stream(path: Path) -> int:
    """Open a stream for appending, without blocking on a FIFO that has no reader."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        if e.errno == errno.ENXIO and stat.S_ISFIFO(os.stat(path).st_mode):
            raise OSError(errno.ENXIO, "no process is reading the FIFO", str(path)) from None
        raise
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd
