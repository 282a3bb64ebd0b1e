"""Whether an output can be written where it is asked for, said in one line before any work."""

from __future__ import annotations

import os
from pathlib import Path

from dials_mdxbg.errors import OutputError
from dials_mdxbg.util.targets import LinkLoop, output_target, stream_problem
from dials_mdxbg.util.tempnames import NAME_MAX


def check_writable(path: Path) -> None:
    """Fail early, with one line, if ``path`` cannot be created."""
    problem = location_problem(Path(path))
    if problem:
        raise OutputError(problem)


def location_problem(path: Path, kind: str = "file") -> str | None:
    """Why ``path`` cannot be written (missing or read-only directory, a directory), or None."""
    path = Path(path)
    try:
        where = output_target(path)
    except LinkLoop:
        return f"{path} is a loop of symbolic links"
    if where.stream:
        return f"{path} is a device, FIFO or socket, not a folder" if kind == "dir" else (
            stream_problem(where)
        )
    target = where.path
    directory = target.parent
    missing = _missing_folder(path) if not os.path.isdir(path.parent) else None
    if missing is not None and missing != path.parent:  # a '..' after it: the path fails
        return f"directory {missing} does not exist ({path} goes through it); create it first"
    if not directory.exists():
        return f"directory {path.parent} does not exist"
    if not directory.is_dir():
        return f"directory {path.parent} does not exist ({path.parent} is a file)"
    if len(os.fsencode(target.name)) > NAME_MAX:
        return f"the name {target.name[:40]}... is longer than a file may have ({NAME_MAX} bytes)"
    if kind == "file" and target.is_dir():
        return f"{path} is an existing directory; give a file name"
    if kind == "dir" and target.exists() and not target.is_dir():
        return f"{path} is an existing file, not a folder"
    try:
        st = os.statvfs(directory)
    except OSError:
        st = None
    if st is not None and st.f_flag & os.ST_RDONLY:
        return f"directory {directory} is on a read-only file system"
    if st is not None and st.f_files > 0 and st.f_favail == 0:
        return (
            f"directory {directory} is on a file system with no free inodes (it holds as many "
            "files as it can); delete files there or write elsewhere"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"directory {directory} is not writable"
    return _sticky_problem(path, target)


def _missing_folder(path: Path) -> Path | None:
    """The first folder of ``path`` that does not exist (as the kernel walks it), or None."""
    parts = Path(path).parent.parts
    for i in range(1, len(parts) + 1):
        if not os.path.isdir(Path(*parts[:i])):
            return Path(*parts[:i])
    return None


def _sticky_problem(path: Path, target: Path) -> str | None:
    """In a shared folder (sticky bit, like /tmp) only the owner may replace a file."""
    me = os.geteuid()
    try:
        folder, existing = target.parent.stat(), target.lstat()
    except OSError:
        return None
    if me == 0 or not folder.st_mode & 0o1000 or me in (folder.st_uid, existing.st_uid):
        return None
    return f"{path} belongs to another user in a shared folder (sticky bit): it cannot be replaced"
