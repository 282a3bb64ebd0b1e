"""What both commands share, written once: the run skeleton, logging, errors, the summary.

:func:`run_command` is every command's body: parse (with the checks of
:mod:`dials_mdxbg.command_line.options`), check every output against every
input before any work, then run the job with DIALS logging inside
:func:`~dials_mdxbg.util.atomic.committed_together` (all outputs appear at the
end, or none), and map every failure to one line and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dials_mdxbg import __version__
from dials_mdxbg.errors import InputError
from dials_mdxbg.util.atomic import write_text

logger = logging.getLogger("dials.mdxbg")


@dataclass(frozen=True)
class Job:
    """What a command runs, in the order :func:`run_command` calls it.

    Attributes:
        usage: the inputs, as ``-h`` shows them.
        missing: what the error line says is missing when nothing was given.
        inputs: ``(params, experiments, files) -> inputs``, validated with one-line
            errors, or None when nothing was given (then the help is shown).
        plan: ``(inputs, params, args) -> OutputPlan`` of what the run reads and writes.
        run: ``(inputs, params, phil_text) -> summary`` (with ``to_dict()``).
        take_files: takes arguments DIALS' parser must not see (image series files):
            ``args -> (taken, rest)``.
    """

    usage: str
    missing: str
    inputs: Callable[..., Any]
    plan: Callable[..., Any]
    run: Callable[..., Any]
    take_files: Callable[[list[str]], tuple[list[str], list[str]]] | None = None


def run_command(command: str, doc: str, phil, job: Job, args: list[str] | None) -> None:
    """Parse, check, log, run ``job`` and write the JSON summary; errors in one line."""
    from dials.util import show_mail_handle_errors
    from dials.util.options import flatten_experiments

    from dials_mdxbg.command_line.options import make_parser, parse
    from dials_mdxbg.util.atomic import committed_together
    from dials_mdxbg.util.versions import versions

    with show_mail_handle_errors(), handle_errors(command):
        args = sys.argv[1:] if args is None else list(args)
        taken, args = job.take_files(args) if job.take_files else ([], args)
        parser = make_parser(command, job.usage, phil, doc)
        params, options = parse(parser, args)
        inputs = job.inputs(params, flatten_experiments(params.input.experiments), taken)
        if inputs is None:
            parser.print_help()
            raise SystemExit(f"{command}: error: no {job.missing} given")
        plan = job.plan(inputs, params, taken + args)
        plan.check()  # before any work: nothing is read, nothing written
        with committed_together():  # every output appears at the end, or none
            configure_logging(parser, options, params.output.log)
            plan.remove_stale()
            summary = job.run(inputs, params, phil.format(params).as_str()).to_dict()
            summary["program"] = command
            summary["versions"] = versions()
            write_json(params.output.json, summary)


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
