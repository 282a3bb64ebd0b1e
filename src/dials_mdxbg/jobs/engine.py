"""Running parts of a job on dask.distributed (a local cluster, a scheduler, or a batch queue).

Nothing here schedules work itself: dask does. We only cut a job into
frame ranges, send self-contained, picklable tasks, and gather the results
(part files for the import, exact integer sums for the binning). A task that
dies is retried by dask on another worker (tasks are idempotent); a job that
fails for good raises, and the callers' atomic outputs leave nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator

from dials_mdxbg.errors import InputError
from dials_mdxbg.jobs.batch import BatchJobs
from dials_mdxbg.util import signals

logger = logging.getLogger("dials.mdxbg.cluster")

INSTALL_HINT = (
    "mp.method=dask needs dask.distributed: pip install 'dials-mdxbg[dask]' "
    "(dask[distributed], plus dask-jobqueue for batch queues)"
)


@contextlib.contextmanager
def dask_client(mp) -> Iterator[tuple[object, BatchJobs | None]]:
    """A dask ``Client`` as the ``mp.dask`` PHIL scope describes, and the batch jobs it started.

    ``scheduler=tcp://host:port`` connects to a running cluster; otherwise
    ``cluster=local`` starts ``mp.nproc`` single-threaded worker processes on
    this machine (loopback only), and ``slurm``/``pbs``/``sge``/``lsf`` submit
    ``njobs`` batch jobs through dask-jobqueue.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    opts = mp.dask
    batch = None
    with contextlib.ExitStack() as stack:
        stack.enter_context(_distributed_logs_to_ours())
        if opts.scheduler:
            logger.info("Connecting to dask scheduler %s", opts.scheduler)
            _probe_scheduler(opts.scheduler, opts.timeout)
            try:
                client = stack.enter_context(Client(opts.scheduler, timeout=opts.timeout))
            except (ValueError, TypeError):
                raise InputError(
                    f"mp.dask.scheduler={opts.scheduler} is not a scheduler address; give "
                    "tcp://host:port (what the scheduler prints at start-up)"
                ) from None
            except (OSError, TimeoutError):
                raise InputError(
                    f"cannot reach the dask scheduler {opts.scheduler} within "
                    f"{opts.timeout} s; check that it runs and the address; no output written"
                ) from None
        elif opts.cluster == "local":
            logger.info("Starting a local dask cluster of %d workers", mp.nproc)
            with _children_ignore_interrupts():
                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=mp.nproc,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address=None,
                        # No dashboard, and its bare HTTP endpoint off port 8787.
                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                        silence_logs=logging.CRITICAL,
                        preload=["dials_mdxbg.jobs.worker_setup"],
                    )
                )
            client = stack.enter_context(Client(cluster))
        else:
            batch = BatchJobs(opts, opts.cluster)
            logger.info("Submitting %s", batch.describe())
            cluster = batch.start(stack)
            client = stack.enter_context(Client(cluster))
        _ignore_cancelled_gathers(client)
        if batch is not None:
            batch.wait_for_worker(client, opts.worker_timeout)
        elif opts.scheduler:
            try:
                client.wait_for_workers(1, timeout=opts.worker_timeout)
            except (TimeoutError, OSError):
                raise InputError(
                    f"no dask worker joined within {opts.worker_timeout} s; no output written"
                ) from None
        yield client, batch


def _probe_scheduler(address: str, timeout: float) -> None:
    """Refuse a ``tcp://`` address that does not answer like a dask scheduler, within ``timeout``.

    A dask scheduler speaks first (its handshake) as soon as it accepts a
    connection; ``distributed.Client`` waits for that handshake without a
    time limit, so a port that accepts and never answers would hang the run.
    """
    import socket

    match = re.fullmatch(r"tcp://\[?([^\]]+?)\]?:(\d+)", address.strip())
    if match is None:
        return  # another transport, or not an address: the Client says which
    host, port = match[1], int(match[2])
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            answered = bool(sock.recv(1))
    except socket.timeout:
        answered = False
    except OSError:
        return  # refused or unreachable: the Client's own error names it
    if not answered:
        raise InputError(
            f"mp.dask.scheduler={address} accepted the connection but did not answer as a "
            f"dask scheduler within {timeout} s; check the address (is it the scheduler's "
            "port?); no output written"
        )


def _children_ignore_interrupts():
    """Start worker processes immune to SIGINT, SIGTERM and SIGHUP, without missing one here.

    Ctrl-C and a scheduler's SIGTERM reach the whole process group; workers
    that died of them would print dask warnings and tracebacks on the shared
    stderr. This process stops them itself when it closes the cluster. The
    signals are *blocked* (not ignored) while the cluster starts: its threads
    and worker processes inherit the mask, and a signal that comes meanwhile
    stays pending and interrupts this process as soon as the start is over
    (ignoring them, as before, lost it and the run went on to exit 0).
    """
    return signals.held()


#: Loggers whose records are dask's own chatter (workers joining, retries, and the
#: tracebacks of callbacks that failed inside the event loop): debug log only.
CHATTY = ("distributed", "dask_jobqueue", "tornado", "asyncio")


class _ToOurLog(logging.Handler):
    """Re-emits a dask/tornado/asyncio record as a DEBUG line of our log (DIALS' ``-vv``)."""

    def emit(self, record: logging.LogRecord) -> None:
        logger.debug("dask: %s", record.getMessage())


@contextlib.contextmanager
def _distributed_logs_to_ours() -> Iterator[None]:
    """Send dask's, dask-jobqueue's, tornado's and asyncio's log records to our debug log.

    A lost worker makes the client warn (e.g. "Couldn't gather keys,
    rescheduling"), workers joining are logged at INFO, a failed callback is
    logged with its traceback: all that belongs in the debug log, while stdout
    keeps our progress and stderr the one-line error of a failed run.
    """
    # distributed gives some of its loggers their own stderr handler.
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in CHATTY]
    roots = [logging.getLogger(n) for n in CHATTY]
    loggers = roots + [logging.getLogger(n) for n in names if n not in CHATTY]
    saved = [(lg, lg.handlers[:], lg.propagate) for lg in loggers]
    forward = _ToOurLog()
    for lg in loggers:
        # Children propagate up to their root, whose only handler forwards.
        lg.handlers, lg.propagate = [], lg.name not in CHATTY
    for lg in roots:
        lg.handlers = [forward]
    try:
        yield
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate


def _ignore_cancelled_gathers(client) -> None:
    """Drop asyncio's report of a result fetch we abandoned on purpose.

    When workers are lost we stop waiting and cancel every future; the
    client's pending fetch then ends with distributed's internal ``AllExit``,
    which asyncio would print as "Task exception was never retrieved".
    """
    from distributed.client import AllExit

    loop = client.loop.asyncio_loop

    def handler(loop, context):
        if not isinstance(context.get("exception"), AllExit):
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


class DaskEngine:
    """``mp.method=dask``: tasks on a dask.distributed cluster."""

    name = "dask"
    tasks_per_worker = 4  # balances uneven workers, and limits what a lost one costs

    def __init__(self, client, worker_timeout: float = 600, batch: BatchJobs | None = None):
        self.client = client
        self.n_workers = max(1, self.live_workers())
        self.worker_timeout = worker_timeout
        self.batch = batch

    def lost_for_good(self) -> str | None:
        """Why no worker can come back (the batch jobs ended), or None while one may."""
        return self.batch.problem() if self.batch is not None else None

    def live_workers(self) -> int:
        """Workers the scheduler knows now."""
        return len(self.client.scheduler_info().get("workers", {}))

    def submit(self, func: Callable, *args):
        """Start ``func(*args)`` on the cluster."""
        return self.client.submit(func, *args, pure=False)


@contextlib.contextmanager
def task_engine(mp) -> Iterator[DaskEngine | None]:
    """The engine for frame-range tasks, or None to work in this process.

    In this process ``mp.nproc`` threads share the work; a pool of forked
    processes was measured no faster on 2 cores (each task reopens its input,
    and the parts must be joined), so ``multiprocessing`` means threads here.
    """
    if mp.method == "dask":
        with dask_client(mp) as (client, batch):
            yield DaskEngine(client, mp.dask.worker_timeout, batch)
    else:
        yield None


def run_tasks(engine, func: Callable, arguments: list[tuple], what: str) -> list:
    """Run ``func(*args)`` for each argument tuple on the engine; results in order.

    If every worker is lost (killed batch jobs) and none is back within
    ``engine.worker_timeout`` seconds, the run fails rather than waiting forever.
    """
    from distributed import wait

    futures = [engine.submit(func, *args) for args in arguments]
    index = {future.key: i for i, future in enumerate(futures)}
    results: dict[int, object] = {}
    pending = set(futures)
    watch = _WorkerWatch(engine)
    try:
        while pending:
            try:
                finished, pending = wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
            except TimeoutError:
                finished = set()
            for future in finished:
                # A result can still be lost with its worker (dask then reruns the task).
                results[index[future.key]] = watch.result(future)
                logger.info("  %s %d/%d done", what, len(results), len(futures))
            watch.check(busy=bool(pending))
    except InputError:
        for future in futures:
            future.cancel()
        raise
    except Exception as e:
        for future in futures:
            future.cancel()
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise InputError(f"a {engine.name} task failed ({reason}); no output written") from None
    return [results[i] for i in range(len(futures))]


class _WorkerWatch:
    """Fails the run once no worker has been connected for ``worker_timeout`` s."""

    def __init__(self, engine):
        self.engine = engine
        self.alone_since: float | None = None

    def check(self, busy: bool = True) -> None:
        if not busy or self.engine.live_workers() > 0:
            self.alone_since = None
            return
        self.alone_since = self.alone_since or time.monotonic()
        reason = self.engine.lost_for_good()
        if reason:
            raise InputError(reason)
        if time.monotonic() - self.alone_since > self.engine.worker_timeout:
            raise InputError(
                f"all dask workers were lost and none came back within "
                f"{self.engine.worker_timeout} s; no output written"
            )

    def result(self, future):
        while True:
            try:
                return future.result(timeout=1.0)
            except TimeoutError:
                self.check()
