"""The signals a command turns into a clean, one-line exit.

SIGINT (Ctrl-C), SIGTERM (a batch scheduler's wall time) and SIGHUP (a
closed terminal) all raise :class:`Interrupted`: the run's temporaries are
removed on the way out and nothing on disk changes. The signal is also
*remembered*: code that catches ``KeyboardInterrupt`` on the way (dask's
cluster start-up does) cannot make the run complete as if nothing happened,
because the commit asks :func:`raise_if_interrupted` first.

SIGXFSZ (``ulimit -f``) is ignored, so that an output past the limit fails
with EFBIG and gets the same one-line error as a full disk instead of
killing the process mid-write.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_NAMES = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGHUP: "SIGHUP (terminal closed)"}

received: int | None = None
"""The first stopping signal received, if any."""


class Interrupted(KeyboardInterrupt):
    """A stopping signal; ``signum`` says which (the exit status is 128 + it)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = int(signum)
        super().__init__(_NAMES.get(signum, signal.Signals(signum).name))


def _stop(signum, frame) -> None:
    global received
    if received is None:
        received = signum
    raise Interrupted(signum)


_ACTIONS = {**dict.fromkeys(STOPPING, _stop), signal.SIGXFSZ: signal.SIG_IGN}
"""What a command does on each signal it handles."""


@contextmanager
def handled() -> Iterator[None]:
    """Stopping signals raise :class:`Interrupted` inside the block (main thread only)."""
    global received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, action) for sig, action in _ACTIONS.items()}
    try:
        yield
    except Exception as e:
        if received is not None:
            # The signal was swallowed on the way (an import that caught it left numpy
            # half-made, say): what failed after it is the interruption's doing.
            raise Interrupted(received) from e
        raise
    finally:
        received = None  # the run is over: a later run in this process starts clean
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Stopping signals held back inside the block (main thread) and delivered at its end.

    For an import whose C initialisation cannot be cut cleanly: numpy's, when a
    signal lands in it, is left half-made, and each C extension that imports it
    next prints the failure itself (numpy's C API) before the command's one line.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)  # a pending signal arrives here


def install() -> None:
    """Handle stopping signals from now on (a command's entry point, before its imports)."""
    for sig, action in _ACTIONS.items():
        signal.signal(sig, action)


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` if a stopping signal came, even if it was caught since."""
    if received is not None:
        raise Interrupted(received)


@contextmanager
def held() -> Iterator[None]:
    """Delay stopping signals until the block is done (main thread; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)
    try:
        yield
    finally:
        # A signal that came meanwhile is delivered now: the outputs are complete.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)
