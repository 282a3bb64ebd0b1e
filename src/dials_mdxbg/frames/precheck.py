"""Input files checked before DIALS' parser reads them, so that a bad one is one line."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import numpy as np

from dials_mdxbg.errors import InputError


def check_input_file(arg: str) -> None:
    """Refuse, naming the file, what DIALS' parser would report with a traceback.

    An unreadable experiment list, missing images, a reflection table, an
    already imported image series, an NXmx master without its data.
    """
    from dials_mdxbg.frames.files import check_hdf5_sources, is_hdf5

    path = Path(arg)
    if path.suffix == ".refl":
        raise InputError(f"{arg} is a reflection table; give the experiments (.expt) or the images")
    if path.suffix in (".expt", ".json"):
        _check_experiment_list(path)
    elif path.is_dir() and not any(p.is_file() for p in path.iterdir()):
        raise InputError(f"{arg} is a directory without image files")
    elif is_hdf5(path) and _holds_image_series(path):  # binning takes series out before
        raise InputError(
            f"{arg} is an mdx2 image series (already imported); give experiments or "
            "images, or bin it with dials.mdx_bin_background"
        )
    elif is_hdf5(path):
        check_hdf5_sources(path)


def missing_input_problem(arg: str) -> str | None:
    """Why an input that does not exist cannot be read, when "no such file" would mislead.

    A loop of symbolic links (or a path through one) and a link whose target
    is gone both look like a missing file to ``Path.exists``.
    """
    try:
        os.stat(arg)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return (
                f"{arg} is a loop of symbolic links (a link that leads back to itself); "
                "fix the link or give the file itself"
            )
        if os.path.islink(arg):
            return (
                f"{arg} is a symbolic link to {os.readlink(arg)}, which does not exist; "
                "fix the link or give the file itself"
            )
    return None


class SeenInputs:
    """The input files named so far, to refuse one given twice (a link or a hard link too).

    DIALS would read the experiments twice and fail on the repeated identifier
    with an error that names no file.
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], str] = {}

    def add(self, arg: str) -> None:
        """Remember ``arg``; raise :class:`InputError` if the same file was given before."""
        st = os.stat(arg)
        first = self.seen.get((st.st_dev, st.st_ino))
        if first is None:
            self.seen[(st.st_dev, st.st_ino)] = arg
            return
        same = "given twice" if first == arg else f"the same file as {first}"
        raise InputError(f"{arg} is {same}; give each input once")


def _holds_image_series(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "entry/image_series" in f
    except OSError:
        return False


def _check_experiment_list(path: Path) -> None:
    """Reject an unreadable experiment list before DIALS prints a traceback for it.

    Also refused here, naming the file: a list without experiments, images that
    are not there, and exposure times that would make counts/s wrong.
    """
    from dials_mdxbg.model import check_exposure_times

    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path} is not a readable experiment list: {e}") from None
    if not isinstance(content, dict) or content.get("__id__") != "ExperimentList":
        raise InputError(f"{path} is not a DIALS experiment list")
    if not content.get("experiment"):
        raise InputError(f"{path} holds no experiments: there is nothing to process")
    for imageset in content.get("imageset") or []:
        template = imageset.get("template") if isinstance(imageset, dict) else None
        if template and "#" in template:
            directory = Path(template).parent
            if not directory.is_dir():
                raise InputError(
                    f"{path}: its images {template} are missing (no directory {directory}); "
                    "move the images back or re-run dials.import"
                )
    for scan in content.get("scan") or []:
        times = np.asarray(scan.get("exposure_time") or [], dtype=np.float64)
        if times.size == 0 or (np.count_nonzero(times) == 1 and times[0] > 0):
            continue  # mdx2 copies a lone first exposure time to every frame
        first = (scan.get("image_range") or [1])[0]
        check_exposure_times(times, first, str(path))


NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)")


def spaced_value_problem(args: list[str], i: int) -> str | None:
    """``bins=10 20 20``: the shell split one PHIL value into words; say how to write it.

    ``args[i]`` is an argument that names no file. When it is a number that
    follows ``name=number`` (through other numbers), the line names the fix.
    """
    if not NUMBER.fullmatch(args[i]):
        return None
    start = i
    while start > 0 and NUMBER.fullmatch(args[start]):
        start -= 1
    if start == i or "=" not in args[start]:
        return None
    name, first = args[start].split("=", 1)
    if not NUMBER.fullmatch(first):
        return None
    stop = i
    while stop + 1 < len(args) and NUMBER.fullmatch(args[stop + 1]):
        stop += 1
    words = [first, *args[start + 1 : stop + 1]]
    return (
        f"{' '.join(args[start : stop + 1])}: the values are separated by spaces, so the "
        f"shell split them; write {name}={','.join(words)} (or quote them: '{name}="
        f"{' '.join(words)}')"
    )
