"""Whole-process timing: wall time, CPU time and the peak memory of the process tree.

A benchmarked command runs in a fresh directory in its own session; a thread
samples the summed ``VmRSS`` of the process and all its descendants (mdx2 and
dask start workers) from ``/proc`` every ``interval`` seconds, and ``wait4``
gives the CPU time and the kernel's ``ru_maxrss`` of the largest single process.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MB = 1e6  # reported "MB" are 10**6 bytes


class BenchmarkError(RuntimeError):
    """A benchmarked command failed or the outputs differ."""


# --------------------------------------------------------------------------- process tree


def _children_via_task_files(pid: int) -> list[int] | None:
    """Direct children of ``pid`` from ``/proc/<pid>/task/*/children``.

    Returns:
        The child pids, or None if the kernel does not provide ``children`` files.
    """
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    children: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                children.extend(int(tok) for tok in fh.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}/children") and os.path.isdir(
                f"/proc/{pid}/task/{tid}"
            ):
                return None  # no CONFIG_PROC_CHILDREN
        except OSError:
            continue
    return children


def _parent_map() -> dict[int, list[int]]:
    """Children of every process, from the parent pid in ``/proc/<pid>/stat``."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name (field 2) may contain spaces; the ppid follows the last ')'.
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(name))
    return tree


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants.

    Args:
        pid: Root process id.

    Returns:
        Pids, root first (processes that vanish while walking are skipped).
    """
    pids = [pid]
    seen = {pid}
    parent_map: dict[int, list[int]] | None = None
    i = 0
    while i < len(pids):
        current = pids[i]
        i += 1
        children = _children_via_task_files(current)
        if children is None:
            if parent_map is None:
                parent_map = _parent_map()
            children = parent_map.get(current, [])
        for child in children:
            if child not in seen:
                seen.add(child)
                pids.append(child)
    return pids


def _proc_field(path: str, key: str) -> int:
    """A ``key: N kB`` field of a /proc file in bytes, 0 if the process is gone."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (``VmRSS``), 0 if gone or a zombie."""
    return _proc_field(f"/proc/{pid}/status", "VmRSS:")


def pss_bytes(pid: int) -> int:
    """Proportional set size (``Pss`` in ``smaps_rollup``), 0 if gone.

    Unlike ``VmRSS``, pages shared between processes (e.g. after ``fork``) are
    divided among them, so sums over a process tree do not count them twice.
    """
    return _proc_field(f"/proc/{pid}/smaps_rollup", "Pss:")


class TreeMemorySampler(threading.Thread):
    """Samples the summed ``VmRSS`` (optionally also ``Pss``) of a process tree."""

    def __init__(self, pid: int, interval: float, pss: bool = False) -> None:
        """Create the sampler (call ``start``).

        Args:
            pid: Root process id.
            interval: Seconds between samples.
            pss: Also sample the summed proportional set size (costlier).
        """
        super().__init__(name=f"rss-sampler-{pid}", daemon=True)
        self.pid = pid
        self.interval = interval
        self.pss = pss
        self.peak_bytes = 0
        self.peak_pss_bytes = 0
        self.peak_processes = 0
        self.max_processes = 0
        self.n_samples = 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        """Take one sample."""
        pids = process_tree(self.pid)
        total = sum(rss_bytes(p) for p in pids)
        if self.pss:
            self.peak_pss_bytes = max(self.peak_pss_bytes, sum(pss_bytes(p) for p in pids))
        self.n_samples += 1
        self.max_processes = max(self.max_processes, len(pids))
        if total > self.peak_bytes:
            self.peak_bytes = total
            self.peak_processes = len(pids)

    def run(self) -> None:
        """Sample until stopped."""
        while not self._stop_event.is_set():
            try:
                self.sample()
            except (OSError, ValueError, IndexError):  # a process vanished mid-read
                pass
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop_event.set()
        self.join()


# --------------------------------------------------------------------------- timed runs


@dataclass
class RunResult:
    """One timed command.

    Attributes:
        key: Run key, e.g. ``mdx2.import``.
        cmd: The command.
        cwd: Its (fresh) working directory.
        wall_s: Wall time in seconds.
        peak_rss_bytes: Peak summed VmRSS of the process tree (sampled).
        max_single_rss_bytes: Kernel ``ru_maxrss`` of the largest single process.
        cpu_s: User + system CPU time of the process and its waited-for children.
        output_bytes: Total size of all files in ``cwd`` afterwards.
        n_samples: Number of memory samples taken.
        peak_processes: Number of processes in the tree at the peak sample.
        max_processes: Largest number of processes seen in the tree.
        peak_pss_bytes: Peak summed PSS of the process tree (None unless sampled).
    """

    key: str
    cmd: list[str]
    cwd: str
    wall_s: float
    peak_rss_bytes: int
    max_single_rss_bytes: int
    cpu_s: float
    output_bytes: int
    n_samples: int
    peak_processes: int
    max_processes: int
    peak_pss_bytes: int | None = None


def dir_size(path: Path) -> int:
    """Total size of the regular files below a directory.

    Args:
        path: Directory.

    Returns:
        Bytes (symlinks are not followed).
    """
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def _tail(path: Path, n_lines: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n_lines:])


def _wait_sampled(
    cmd: list[str], cwd: Path, log_path: Path, sampler_args: tuple[float, bool]
) -> tuple[float, int, resource.struct_rusage, TreeMemorySampler]:
    """Start the command in its own session, sample it and wait for it.

    Returns:
        Wall time, exit code, resource usage and the (stopped) sampler.
    """
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        sampler = TreeMemorySampler(proc.pid, *sampler_args)
        sampler.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # our own process group only
            proc.wait()
            sampler.stop()
            raise
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
    return wall, proc.returncode, usage, sampler


def run_timed(key: str, cmd: list[str], cwd: Path, interval: float, pss: bool = False) -> RunResult:
    """Run a command in a fresh directory, measuring time, memory and output size.

    The command's stdout and stderr go to ``<cwd>.out.txt`` beside the directory, so
    they do not count as output.

    Args:
        key: Run key.
        cmd: The command.
        cwd: Working directory (deleted first if it exists, then created).
        interval: Memory sampling interval (seconds).
        pss: Also sample the summed PSS of the process tree.

    Returns:
        The measurements.

    Raises:
        BenchmarkError: If the command exits with a non-zero status.
    """
    if cwd.exists():
        shutil.rmtree(cwd)
    cwd.mkdir(parents=True)
    log_path = cwd.with_name(cwd.name + ".out.txt")
    print(f"  [{key}] {shlex.join(cmd)}", file=sys.stderr, flush=True)
    wall, returncode, usage, sampler = _wait_sampled(cmd, cwd, log_path, (interval, pss))
    if returncode != 0:
        raise BenchmarkError(
            f"command failed with exit code {returncode}:\n  cd {shlex.quote(str(cwd))} && "
            f"{shlex.join(cmd)}\n--- output tail ({log_path}) ---\n{_tail(log_path)}"
        )
    result = RunResult(
        key=key,
        cmd=list(cmd),
        cwd=str(cwd),
        wall_s=wall,
        peak_rss_bytes=sampler.peak_bytes,
        max_single_rss_bytes=int(usage.ru_maxrss) * 1024,
        cpu_s=usage.ru_utime + usage.ru_stime,
        output_bytes=dir_size(cwd),
        n_samples=sampler.n_samples,
        peak_processes=sampler.peak_processes,
        max_processes=sampler.max_processes,
        peak_pss_bytes=sampler.peak_pss_bytes if pss else None,
    )
    print(
        f"    {wall:.2f} s, peak {result.peak_rss_bytes / MB:.0f} MB, "
        f"output {result.output_bytes / MB:.1f} MB",
        file=sys.stderr,
        flush=True,
    )
    return result
