"""What both commands share: parsing, logging, one-line errors, the JSON summary."""

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


def make_parser(command: str, inputs: str, phil, doc: str):
    """DIALS' ArgumentParser as both commands use it (experiments or images in)."""
    from dials.util.options import ArgumentParser

    return ArgumentParser(
        usage=f"{command} [options] {inputs}",
        phil=phil,
        read_experiments=True,
        read_experiments_from_images=True,
        check_format=True,
        epilog=doc,
    )


def parse(parser, args: list[str] | None):
    """Parse DIALS-style arguments; turn every parser complaint into one line.

    Returns:
        (params, options) as DIALS' ``ArgumentParser.parse_args`` does.
    """
    from libtbx.utils import Sorry

    args = sys.argv[1:] if args is None else list(args)
    for arg in args:
        if "=" in arg or arg.startswith("-"):
            continue
        if not Path(arg).exists():
            raise InputError(f"{arg}: no such file")
        if arg.endswith((".expt", ".json")):
            _check_experiment_list(Path(arg))
    try:
        params, options = parser.parse_args(args=args, show_diff_phil=False)
    except (Sorry, RuntimeError) as e:  # libtbx.phil raises RuntimeError for bad values
        raise InputError(" ".join(str(e).split())) from None
    except (ValueError, OSError) as e:  # dxtbx, for images it cannot make a sweep of
        raise InputError("could not read the input images: " + " ".join(str(e).split())) from None
    return params, options


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
