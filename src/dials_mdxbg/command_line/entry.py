"""Console entry points: stopping signals are handled before any command module is imported.

A Ctrl-C during the first half second (Python importing libtbx and DIALS)
would otherwise print a traceback of whatever import it interrupted.
"""

from __future__ import annotations

import importlib


def mdx_import() -> None:
    """``dials.mdx_import``."""
    _run("mdx_import")


def mdx_bin_background() -> None:
    """``dials.mdx_bin_background``."""
    _run("mdx_bin_background")


def _run(name: str) -> None:
    command_name = f"dials.{name}"
    try:
        # Everything is inside the try: a signal can land anywhere, even in these imports.
        from dials_mdxbg.util import signals

        signals.install()
        from dials_mdxbg.util import stderr_hold

        # Under a memory limit, what C libraries print as memory runs out is held back.
        stderr_hold.hold_stderr(command_name)
        from dials_mdxbg.util.fast_exit import leave

        with signals.deferred():  # numpy's C initialisation is not to be cut (see there)
            import numpy  # noqa: F401  (after the hold: OpenBLAS may print as memory runs out)

        command = importlib.import_module(f"dials_mdxbg.command_line.{name}")
    except KeyboardInterrupt as e:
        _interrupted(e, command_name)
    except Exception as e:
        _import_failed(e, command_name)
    try:
        command.run()
        code = 0
    except SystemExit as e:
        code = e.code
    except KeyboardInterrupt as e:  # a signal before the command's own handling began
        _interrupted(e, command_name)
    leave(code)


def _interrupted(e: KeyboardInterrupt, command: str) -> None:
    from dials_mdxbg.util.exits import interrupted

    interrupted(e, command)


def _import_failed(e: Exception, command: str) -> None:
    """One line: the interruption, if a signal came (Python may have turned it into
    another error, e.g. in a class body being made), else what the import met."""
    from dials_mdxbg.util import signals, stderr_hold

    if signals.received is not None:
        _interrupted(signals.Interrupted(signals.received), command)
    stderr_hold.import_failed(e, command)  # memory: one line, no traceback
