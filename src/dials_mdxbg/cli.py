"""Plumbing shared by the two commands: parsing, logging, errors, summaries."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from dials_mdxbg import __version__
from dials_mdxbg.errors import InputError

logger = logging.getLogger("dials.mdxbg")


def versions() -> dict[str, str]:
    """Versions of everything that shapes the output, for provenance."""
    import h5py
    import numpy

    from dials_mdxbg import codec

    found = {
        "dials_mdxbg": __version__,
        "numpy": numpy.__version__,
        "h5py": h5py.version.version,
        "hdf5": h5py.version.hdf5_version,
        "deflate": codec.DEFLATE_BACKEND,
    }
    for name in ("dials", "dxtbx"):
        try:
            from importlib.metadata import version

            found[name] = version(name)
        except Exception:
            try:
                module = __import__(name)
                found[name] = getattr(module, "__version__", "unknown")
            except ImportError:
                found[name] = "not installed"
    try:
        from dials.util.version import dials_version

        found["dials"] = dials_version()
    except Exception:
        pass
    return found


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
    target = Path(path)
    tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
    tmp.write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, target)
    logger.info("Summary written to %s", target)


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class Progress:
    """Log progress of a long loop at most every few seconds (and at the end)."""

    def __init__(self, total: int, what: str, every: float = 5.0):
        self.total = total
        self.what = what
        self.every = every
        self.start = time.perf_counter()
        self._last = self.start

    def update(self, done: int) -> None:
        """Report that ``done`` of ``total`` items are finished."""
        now = time.perf_counter()
        if done < self.total and now - self._last < self.every:
            return
        self._last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        logger.info(
            "  %s %d/%d (%.0f%%), %.1f s, %.1f/s",
            self.what,
            done,
            self.total,
            100.0 * done / max(self.total, 1),
            elapsed,
            rate,
        )

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start
