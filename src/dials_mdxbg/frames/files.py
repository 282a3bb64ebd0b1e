"""The files behind an experiment list, found and checked before any frame is read.

dxtbx reads an NXmx/Eiger master whose data files are missing without an
error: ``FormatNXmx`` maps ``/entry/data`` through a virtual dataset or
external links, and HDF5 fills missing sources with zeros (a 488-frame sweep
of zeros from ``Therm_6_2.nxs``), or dxtbx fails with a ``KeyError``. So every
external link and virtual-dataset source of an HDF5 image file is resolved
here as HDF5 would (beside the master, then the working directory) and a
missing one is named.
"""

from __future__ import annotations

import os
from pathlib import Path

from dials_mdxbg.errors import InputError

_MAX_OBJECTS = 5000  # a master file holds tens of objects; never walk a data file for long


def is_hdf5(path: str | os.PathLike) -> bool:
    """True for an existing HDF5 file (by its signature)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head == b"\x89HDF\r\n\x1a\n"


def _resolve(name: str, master: Path) -> Path | None:
    candidate = Path(name)
    options = [candidate] if candidate.is_absolute() else [master.parent / name, Path.cwd() / name]
    for option in options:
        if option.is_file():
            return option
    return None


def hdf5_sources(path: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """The files an HDF5 file's external links and virtual datasets point at.

    Returns:
        (files found, names of the missing ones).
    """
    import h5py

    master = Path(path)
    found: dict[Path, None] = {}
    missing: dict[str, None] = {}
    try:
        f = h5py.File(master, "r")
    except OSError:
        return [], []  # not readable: the format's own reader says so
    with f:
        stack, seen = [f], 0
        while stack and seen < _MAX_OBJECTS:
            group = stack.pop()
            for name in list(group):
                seen += 1
                link = group.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    target = _resolve(link.filename, master)
                    if target is None:
                        missing[link.filename] = None
                    else:
                        found[target] = None
                    continue
                if isinstance(link, h5py.SoftLink):
                    continue
                try:
                    obj = group[name]
                except (KeyError, OSError):
                    continue
                if isinstance(obj, h5py.Group):
                    stack.append(obj)
                elif isinstance(obj, h5py.Dataset) and obj.is_virtual:
                    for source in obj.virtual_sources():
                        if source.file_name == ".":
                            continue  # this file: its links are walked above
                        target = _resolve(source.file_name, master)
                        if target is None:
                            missing[source.file_name] = None
                        else:
                            found[target] = None
    return list(found), list(missing)


def check_hdf5_sources(path: str | os.PathLike) -> list[Path]:
    """Raise :class:`InputError` naming a missing data file of an HDF5 image file.

    Returns:
        The data files it maps (inputs too).
    """
    found, missing = hdf5_sources(path)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(
            f"{path}: its data file {missing[0]}{more} is missing (looked beside it in "
            f"{Path(path).absolute().parent}); keep the data files with the master file"
        )
    return found


def image_files(imageset) -> list[Path]:
    """Every file an imageset reads: its images, and the data files of HDF5 masters.

    Raises:
        InputError: an HDF5 master's data file is missing.
    """
    paths = [Path(p) for p in dict.fromkeys(imageset.paths())]
    files = list(paths)
    for path in paths[:1] if len(paths) > 1 else paths:  # a sweep of CBFs needs no look inside
        if is_hdf5(path):
            files += check_hdf5_sources(path)
    return files
