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
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

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


def input_args(args: list[str]) -> list[str]:
    """The positional arguments that name files (not PHIL assignments or options)."""
    return [a for a in args if "=" not in a and not a.startswith("-")]


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


def configure_logging(parser, options, logfile: str | None) -> None:
    """DIALS logging to stdout and the log file, then the non-default PHIL.

    Inside a run (:func:`dials_mdxbg.util.atomic.committed_together`) the log
    is written under a temporary name and committed with the other outputs;
    a failed write to it (a full disk) fails the run at the commit instead of
    printing a traceback per record.
    """
    from dials.util import log

    from dials_mdxbg.util import atomic

    failures: list[BaseException] = []
    final = Path(logfile) if logfile else None

    def check() -> None:
        for handler in _file_handlers():
            try:
                handler.flush()
            except OSError as e:
                failures.append(e)
        if failures and final is not None:
            error = failures[0]
            raise (atomic.output_error(error, final) if isinstance(error, OSError) else None) or (
                atomic.OutputError(f"cannot write the log {final}")
            )

    def handle_error(self, record) -> None:  # instead of a traceback per record
        failures.append(sys.exc_info()[1])

    path = atomic.stage_file(final, check) if final else None
    original = logging.FileHandler.handleError
    logging.FileHandler.handleError = handle_error  # DIALS logs its banner at once
    try:
        log.config(verbosity=options.verbose, logfile=str(path) if path else None)
    finally:
        logging.FileHandler.handleError = original
    for handler in _file_handlers():
        handler.handleError = handle_error.__get__(handler)
    logger.info("dials-mdxbg %s", __version__)
    for arg, preset in getattr(options, "presets", ()):
        logger.info("Preset %s: %s", arg, preset)
    diff_phil = parser.diff_phil.as_str()
    if diff_phil:
        logger.info("The following parameters have been modified:\n%s", diff_phil)


def _file_handlers() -> list[logging.FileHandler]:
    return [h for h in logging.getLogger("dials").handlers if isinstance(h, logging.FileHandler)]


def fail(message: str, command: str, code: int = 1) -> None:
    """Exit with status ``code`` and one readable line (no traceback)."""
    from dials_mdxbg.util import atomic

    message = " ".join(str(message).split())
    if logging.getLogger("dials").handlers:
        logger.error("Error: %s", message)
    line = f"{command}: error: {message}"
    if atomic.hdf5_failed:
        # HDF5 hit a full disk: its teardown at exit would segfault (see util.atomic).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        os._exit(code)
    print(line, file=sys.stderr)
    sys.exit(code)


class Interrupted(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's wall time), handled as Ctrl-C is."""


def _terminate(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def handle_errors(command: str) -> Iterator[None]:
    """Map bad input, interruptions and failures to one line and a non-zero exit.

    SIGTERM is handled like SIGINT: the run's temporaries are removed on the
    way out (every output is committed only at the end) and nothing on disk
    changes. Any other exception is a bug, still reported in one line
    (``DIALS_MDXBG_TRACEBACK=1`` shows the traceback).
    """
    from libtbx.utils import Sorry

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except (InputError, Sorry) as e:
        fail(str(e), command)
    except KeyboardInterrupt as e:
        name = e.args[0] if isinstance(e, Interrupted) and e.args else "SIGINT (Ctrl-C)"
        number = signal.SIGTERM if isinstance(e, Interrupted) else signal.SIGINT
        from dials_mdxbg.util import atomic

        done = "the outputs were complete" if atomic.committed else "no output written"
        fail(f"interrupted by {name}; {done}, nothing else changed", command, 128 + number)
    except SystemExit:
        raise
    except Exception as e:
        if os.environ.get("DIALS_MDXBG_TRACEBACK"):
            raise
        from dials_mdxbg.util import atomic

        if isinstance(e, OSError) and atomic.output_error(e, Path(e.filename or "output")):
            fail(str(atomic.output_error(e, Path(e.filename or "output"))), command)
        reason = " ".join(str(e).split())[:200] or "no reason given"
        fail(
            f"unexpected failure ({reason}); nothing was written. Please report it with the "
            "log (DIALS_MDXBG_TRACEBACK=1 shows the traceback)",
            command,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)


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
