"""Set-up run in each local dask worker process (a ``preload`` of :mod:`dials_mdxbg.jobs.engine`).

The worker starts with SIGINT, SIGTERM and SIGHUP *blocked* (inherited from
the command while it starts the cluster). Here they become *ignored*, which
drops any already pending, and are unblocked: Ctrl-C or a scheduler's SIGTERM
to the process group never kills a worker mid-task with a traceback on the
shared stderr; the command closes its workers itself.
"""

from __future__ import annotations

import signal

from dials_mdxbg.util.signals import STOPPING


def dask_setup(worker) -> None:
    """distributed's preload hook: make this worker immune to the stopping signals."""
    try:
        for sig in STOPPING:
            signal.signal(sig, signal.SIG_IGN)
    except ValueError:  # not the main thread: the inherited mask keeps them blocked
        return
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)
