"""How a command ends when something goes wrong: one line and a non-zero exit status."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from dials_mdxbg.errors import InputError
from dials_mdxbg.util import signals
from dials_mdxbg.util.memory import MESSAGE as OUT_OF_MEMORY
from dials_mdxbg.util.memory import out_of_memory
from dials_mdxbg.util.stderr_hold import exit_now, release_stderr

logger = logging.getLogger("dials.mdxbg")


RESERVE_BYTES = 16 << 20
"""Address space a run holds back for its error handling (see :func:`handle_errors`)."""

NOT_READY = 3
"""Exit status of a run whose map is not ready for mdx2.correct (verdict.fail_if_not_ready)."""


def fail(message: str, command: str, code: int = 1) -> None:
    """Exit with status ``code`` and one readable line (no traceback).

    The line goes to stderr once; the log file gets it too, but not the console
    (stdout), so a terminal shows it once. Memory having run out, the process
    ends at once after the line
    (:func:`~dials_mdxbg.util.stderr_hold.exit_now`): what a normal exit waits
    for may never finish then.
    """
    from dials_mdxbg.util import atomic, output_errors

    atomic.remove_leftovers()  # what the unwinding could not remove (memory ran out)
    message = " ".join(str(message).split())
    oom = message == OUT_OF_MEMORY
    release_stderr(show=not oom)  # what libraries printed as memory ran out is noise
    _log_to_files("Error: " + message)
    line = f"{command}: error: {message}"
    if output_errors.hdf5_failed or oom:
        # HDF5 hit a full disk (its teardown at exit would segfault: util.output_errors), or
        # memory ran out (a thread retrying an allocation would keep a normal exit waiting).
        exit_now(line, code)
    print(line, file=sys.stderr)
    sys.exit(code)


def _log_to_files(text: str) -> None:
    """``text`` as an error record in the run's log file(s) only."""
    files = [h for h in logging.getLogger("dials").handlers if isinstance(h, logging.FileHandler)]
    if not files:
        return
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "%s", (text,), None)
    for handler in files:
        with contextlib.suppress(Exception):  # a failing log must not hide the error line
            handler.handle(record)


@contextlib.contextmanager
def handle_errors(command: str) -> Iterator[None]:
    """Map bad input, interruptions and failures to one line and a non-zero exit.

    SIGTERM and SIGHUP are handled like SIGINT (:mod:`dials_mdxbg.util.signals`):
    the run's temporaries are removed on the way out (every output is committed
    only at the end) and nothing on disk changes. Any other exception is a bug,
    still reported in one line; its log is kept (see
    :func:`dials_mdxbg.util.atomic.keep_log`) and ``DIALS_MDXBG_TRACEBACK=1``
    shows the traceback.
    """
    from libtbx.utils import Sorry

    # Address space given back before an error is handled: when memory ran out, even
    # reading os.environ may fail, and the one line must still be written.
    reserve = [r for r in (_reserve(),) if r is not None]
    previous_hook, sys.unraisablehook = sys.unraisablehook, _unraisable
    try:
        try:
            with signals.handled():
                yield
        except BaseException as e:  # the hook stays: the process ends, finalisers run on the way
            for block in reserve:
                block.close()
            if isinstance(e, (InputError, Sorry)):
                fail(str(e), command)
            if isinstance(e, KeyboardInterrupt):
                interrupted(e, command)
            if not isinstance(e, Exception) or os.environ.get("DIALS_MDXBG_TRACEBACK"):
                raise
            if out_of_memory(e):  # a limit or a full machine: neither a bug nor a bad input
                fail(OUT_OF_MEMORY, command)
            error = _output_error(e)
            if error is not None:
                fail(str(error), command)
            reason = " ".join(str(e).split())[:200] or "no reason given"
            log = getattr(e, "mdxbg_log", None)
            where = (
                f"nothing else was written; please report it with the log {log}"
                if log
                else "nothing was written; please report it"
            )
            fail(
                f"unexpected failure ({reason}); {where} (DIALS_MDXBG_TRACEBACK=1 shows the "
                "traceback)",
                command,
            )
        else:
            sys.unraisablehook = previous_hook
            for block in reserve:
                block.close()
    finally:
        release_stderr()  # a run that ends otherwise (--help, a parser's exit)


def _unraisable(unraisable) -> None:
    """Python's hook for errors it cannot raise (in ``__del__``, at garbage collection).

    When memory runs out, a finaliser fails too and Python's own hook would print
    "Exception ignored in: ..." before the one error line (or in the middle of it):
    a failed allocation there is dropped, and so is a stopping signal that landed in
    one (it is remembered: :mod:`dials_mdxbg.util.signals`); anything else is
    reported as Python would.
    """
    if out_of_memory(unraisable.exc_value) or isinstance(unraisable.exc_value, KeyboardInterrupt):
        return
    sys.__unraisablehook__(unraisable)


def _reserve():
    """16 MiB of address space, never touched (no resident memory), unmapped on close();
    None when even that cannot be had (the run then fails, in one line, soon after)."""
    import mmap

    try:
        return mmap.mmap(-1, RESERVE_BYTES)
    except (OSError, MemoryError, ValueError):
        return None


def _output_error(e: BaseException):
    """The one-line error of a failed write, or None."""
    from dials_mdxbg.util.output_errors import named_in, output_error

    if not isinstance(e, OSError):
        return None
    return output_error(e, named_in(e) or Path("output"))


def unexpected(e: BaseException) -> bool:
    """A bug rather than bad input, an interruption, memory running out or a failed write."""
    from libtbx.utils import Sorry

    if not isinstance(e, Exception) or isinstance(e, Sorry) or out_of_memory(e):
        return False
    if signals.received is not None:
        return False  # the failure of a run interrupted by a signal that was swallowed
    return _output_error(e) is None


def interrupted(e: KeyboardInterrupt, command: str) -> None:
    """Exit 128 + the signal's number, in one line, saying whether the outputs were complete."""
    from dials_mdxbg.util import atomic

    signum = e.signum if isinstance(e, signals.Interrupted) else signal.SIGINT
    name = e.args[0] if isinstance(e, signals.Interrupted) else "SIGINT (Ctrl-C)"
    done = "the outputs were complete" if atomic.committed else "no output written"
    fail(f"interrupted by {name}; {done}, nothing else changed", command, 128 + signum)


def survive_closed_console(handlers: list[logging.Handler]) -> None:
    """A console whose reader went away (``| head -1``) goes quiet; the run goes on.

    Without this, every log record after the pipe closed prints "--- Logging
    error ---" and a traceback (Python ignores SIGPIPE, so writes raise EPIPE).
    """
    for handler in handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.handleError = _closed_console.__get__(handler)


def _closed_console(self: logging.StreamHandler, record: logging.LogRecord) -> None:
    if isinstance(sys.exc_info()[1], BrokenPipeError):
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())  # later writes (and the exit flush) succeed
            os.close(devnull)
        return
    logging.StreamHandler.handleError(self, record)
