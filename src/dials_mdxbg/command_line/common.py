"""What both commands share: parsing, logging, one-line errors, the JSON summary.

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

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from dials_mdxbg import __version__
from dials_mdxbg.errors import InputError
from dials_mdxbg.util.atomic import write_text

logger = logging.getLogger("dials.mdxbg")

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

    A positional argument that is not a file but names a shipped preset is
    replaced by the preset's path (see the module docstring).

    Returns:
        (params, options) as DIALS' ``ArgumentParser.parse_args`` does;
        ``options.presets`` lists the (argument, resolved path) of presets used.
    """
    from libtbx.utils import Sorry

    args = sys.argv[1:] if args is None else list(args)
    resolved = []
    for i, arg in enumerate(args):
        if "=" in arg or arg.startswith("-"):
            continue
        if not Path(arg).exists():
            preset = resolve_preset(arg)
            if preset is None:
                raise InputError(f"{arg}: no such file (nor a preset: {_preset_names()})")
            args[i] = str(preset)
            resolved.append((arg, preset))
        elif arg.endswith((".expt", ".json")):
            _check_experiment_list(Path(arg))
    try:
        params, options = parser.parse_args(args=args, show_diff_phil=False)
    except (Sorry, RuntimeError) as e:  # libtbx.phil raises RuntimeError for bad values
        raise InputError(" ".join(str(e).split())) from None
    except (ValueError, OSError) as e:  # dxtbx, for images it cannot make a sweep of
        raise InputError("could not read the input images: " + " ".join(str(e).split())) from None
    options.presets = resolved
    return params, options


def _preset_names() -> str:
    return ", ".join(presets()) or "none installed"


def _check_experiment_list(path: Path) -> None:
    """Reject an unreadable experiment list before DIALS prints a traceback for it."""
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path} is not a readable experiment list: {e}") from None
    if not isinstance(content, dict) or content.get("__id__") != "ExperimentList":
        raise InputError(f"{path} is not a DIALS experiment list")


def configure_logging(parser, options, logfile: str | None) -> None:
    """DIALS logging to stdout and the log file, then the non-default PHIL."""
    from dials.util import log

    log.config(verbosity=options.verbose, logfile=logfile)
    logger.info("dials-mdxbg %s", __version__)
    for arg, path in getattr(options, "presets", ()):
        logger.info("Preset %s: %s", arg, path)
    diff_phil = parser.diff_phil.as_str()
    if diff_phil:
        logger.info("The following parameters have been modified:\n%s", diff_phil)


def fail(error: Exception, command: str) -> None:
    """Exit non-zero with one readable line (no traceback)."""
    message = " ".join(str(error).split())
    if logging.getLogger("dials").handlers:
        logger.error("Error: %s", message)
    sys.exit(f"{command}: error: {message}")


@contextlib.contextmanager
def handle_errors(command: str) -> Iterator[None]:
    """Map bad input and interruptions to clean exits."""
    from libtbx.utils import Sorry

    try:
        yield
    except (InputError, Sorry) as e:
        fail(e, command)
    except KeyboardInterrupt:
        sys.exit(f"{command}: interrupted; no output written")


def write_json(path: str | None, summary: dict) -> None:
    """Write the machine-readable summary atomically, if asked for."""
    if not path:
        return
    target = write_text(Path(path), json.dumps(summary, indent=2, default=_jsonable) + "\n")
    logger.info("Summary written to %s", target)


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
