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

logger = logging.getLogger("dials.mdxbg")


def fail(message: str, command: str, code: int = 1) -> None:
    """Exit with status ``code`` and one readable line (no traceback)."""
    from dials_mdxbg.util import output_errors

    message = " ".join(str(message).split())
    if logging.getLogger("dials").handlers:
        logger.error("Error: %s", message)
    line = f"{command}: error: {message}"
    if output_errors.hdf5_failed:
        # HDF5 hit a full disk: its teardown at exit would segfault (see util.output_errors).
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
