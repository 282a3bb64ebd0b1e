"""Parsing both commands share: presets, DIALS' parser, input files checked first.

Presets. The PHIL files of the repository's ``phil/`` folder are shipped in
the package (``dials_mdxbg/presets/``, copied there by ``setup.py`` when the
wheel is built) and can be given by name from any directory: a positional
``insulin_background.phil`` (or ``insulin_background``, or the checkout's
``phil/insulin_background.phil``) that is not a file in the working
directory is looked up among them, and the resolved path is logged. A file of
that name in the working directory always wins, as DIALS users expect. ``-h``
lists the presets.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from dials_mdxbg.errors import InputError

PRESET_SUFFIX = ".phil"


def preset_dirs() -> list[Path]:
    """Folders holding the shipped presets, the installed one first.

    An installed package has ``dials_mdxbg/presets/``; an editable install or
    a checkout on ``sys.path`` has the repository's ``phil/`` instead (the
    presets' source, two levels above the package in the ``src`` layout).
    """
    package = Path(__file__).resolve().parents[1]
    candidates = [package / "presets", package.parents[1] / "phil"]
    return [d for d in candidates if d.is_dir() and any(d.glob("*" + PRESET_SUFFIX))]


def presets() -> dict[str, Path]:
    """Preset file name -> path (the first folder of :func:`preset_dirs` wins)."""
    found: dict[str, Path] = {}
    for directory in preset_dirs():
        for path in sorted(directory.glob("*" + PRESET_SUFFIX)):
            found.setdefault(path.name, path)
    return found


def resolve_preset(arg: str) -> Path | None:
    """The shipped preset ``arg`` names, or None.

    ``arg`` is a preset's file name, with or without ``.phil``, or
    ``phil/<name>`` as README's commands from a checkout spell it.
    """
    path = Path(arg)
    if len(path.parts) > 2 or (len(path.parts) == 2 and path.parts[0] != "phil"):
        return None
    name = path.name if path.name.endswith(PRESET_SUFFIX) else path.name + PRESET_SUFFIX
    return presets().get(name)


def presets_help() -> str:
    """The -h text listing the presets, with each file's first comment line."""
    found = presets()
    if not found:
        return ""
    lines = ["", "Presets shipped with dials-mdxbg (give the name, e.g. insulin_background.phil):"]
    for name, path in found.items():
        first = next(
            (ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.strip()), ""
        )
        lines.append(f"  {name:26s} {first}")
    lines.append(f"  (in {path.parent})")
    return "\n".join(lines) + "\n"


def make_parser(command: str, inputs: str, phil, doc: str):
    """DIALS' ArgumentParser as both commands use it (experiments or images in)."""
    from dials.util.options import ArgumentParser

    return ArgumentParser(
        usage=f"{command} [options] {inputs}",
        phil=phil,
        read_experiments=True,
        read_experiments_from_images=True,
        check_format=True,
        epilog=doc + presets_help(),
    )


def parse(parser, args: list[str] | None):
    """Parse DIALS-style arguments; turn every parser complaint into one line.

    Files are checked first, so that what DIALS would report as a traceback
    inside a "line" (an unreadable experiment list, missing images, a
    reflection table, an NXmx master without its data) is one sentence naming
    the file. A positional argument that is not a file but names a shipped
    preset is replaced by the preset's path (see the module docstring).

    Returns:
        (params, options) as DIALS' ``ArgumentParser.parse_args`` does;
        ``options.presets`` lists the (argument, resolved path) of presets used.
    """
    from libtbx.utils import Sorry

    from dials_mdxbg.frames.files import check_hdf5_sources, is_hdf5

    args = sys.argv[1:] if args is None else list(args)
    resolved = []
    for i, arg in enumerate(args):
        if "=" in arg or arg.startswith("-"):
            continue
        path = Path(arg)
        if not path.exists():
            preset = resolve_preset(arg)
            if preset is None:
                raise InputError(f"{arg}: no such file (nor a preset: {_preset_names()})")
            args[i] = str(preset)
            resolved.append((arg, preset))
        elif path.suffix == ".refl":
            raise InputError(
                f"{arg} is a reflection table; give the experiments (.expt) or the images"
            )
        elif path.suffix in (".expt", ".json"):
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
    try:
        params, options = parser.parse_args(args=args, show_diff_phil=False)
    except (Sorry, RuntimeError) as e:  # libtbx.phil raises RuntimeError for bad values
        raise InputError(_condense(str(e))) from None
    except (ValueError, OSError) as e:  # dxtbx, for images it cannot make a sweep of
        raise InputError("could not read the input images: " + _condense(str(e))) from None
    except EOFError:  # gzip/bzip2 inside dxtbx, for a compressed image cut short
        raise InputError(
            "could not read the input images: a compressed image is truncated (it ends "
            "before its end-of-stream marker); restore it from the source"
        ) from None
    options.presets = resolved
    return params, options


def _preset_names() -> str:
    return ", ".join(presets()) or "none installed"


def _holds_image_series(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "entry/image_series" in f
    except OSError:
        return False


def _condense(message: str) -> str:
    """DIALS' parser message in one sentence, without the tracebacks it embeds."""
    text = " ".join(message.split())
    if "Unable to handle the following arguments" in text:
        names = re.findall(r'"([^"]+)" failed during', text) or re.findall(r"  (\S+)", message)
        names = list(dict.fromkeys(names))
        if names:
            return (
                f"{', '.join(names)}: not an experiment list or images that dxtbx can read; "
                "check the file names (and that the images are complete)"
            )
    if "Traceback" in text:
        text = text.split("Traceback")[0].strip(" :") or "DIALS could not read the input"
    return text


def _check_experiment_list(path: Path) -> None:
    """Reject an unreadable experiment list before DIALS prints a traceback for it.

    Also refused here, naming the file: a list without experiments, images that
    are not there, and exposure times that would make counts/s wrong.
    """
    from dials_mdxbg.frames.source import check_exposure_times

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
