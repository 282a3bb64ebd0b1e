"""The one way the commands write a file: complete, or not at all.

Every output (image series, its parts, the map, the PNG, the JSON summary) is
written under a hidden temporary name in its destination directory
(``.<name>.part-<pid>``) and renamed into place only when complete; on any
error the temporary is removed. A rename within one directory is atomic, so
a reader (or a killed run) never sees half a file under the final name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from dials_mdxbg.errors import InputError


def temporary_name(final: Path) -> Path:
    """The hidden sibling that ``final`` is written as until it is complete."""
    final = Path(final)
    return final.with_name(f".{final.name}.part-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; rename it into place on success.

    On any exception the temporary file is removed, so no partial output that
    looks valid is ever left behind.
    """
    final = Path(final)
    tmp = temporary_name(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: Path, text: str) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def check_writable(path: Path) -> None:
    """Fail early, with one line, if ``path`` cannot be created."""
    directory = Path(path).resolve().parent
    if not directory.is_dir():
        raise InputError(f"output directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"output directory {directory} is not writable")
