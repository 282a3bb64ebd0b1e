"""Benchmark ``dials_mdxbg`` against mdx2 on a synthetic Pilatus background sweep.

For each number of frames (and the detector layout given by ``--modules``) a synthetic
sweep is written once into the work directory (and reused while its ``spec.json``
matches) and imported with ``dials.import``. Then, for each ``--nproc`` value and
``--repeats`` times, these whole commands are timed, each in its own fresh directory:

* import: ``mdx2.import_data`` vs ``dials.mdx_import``;
* bin from image series: ``mdx2.bin_image_series`` on mdx2's image series vs
  ``dials.mdx_bin_background`` on ours;
* one step vs two steps: mdx2's import + binning (times summed, peak memory = max of
  the two, output sizes summed) vs ``dials.mdx_bin_background background.expt``.

Measured per run: wall time (``time.perf_counter`` around the subprocess), peak resident
memory of the process tree (the sum of ``VmRSS`` of the process and all its descendants,
sampled from ``/proc`` every ``--sample-interval`` seconds; the kernel's ``ru_maxrss``
of the largest single process and the CPU time are kept in the JSON too) and the
total size of all files the command wrote (for mdx2's import including ``datastore/``).

Before anything is reported the outputs are checked: mdx2's and our image series
``data`` must be identical, and the binned ``signal`` of mdx2, our two-step and our
one-step paths equal (``rtol=1e-12``, identical NaN positions) on identical axes. Any
difference is printed and the script exits with status 1.

Example:
    Activate the environment (``source scripts/bootstrap.sh --test``), then::

        python benchmarks/compare_mdx2.py --frames 50 --modules 5 12 --nproc 1 2 \\
            --repeats 1 --workdir bench --json bench/results.json \\
            --markdown bench/results.md

    ``--frames 50 200`` runs everything for both sizes and adds the linearity ratios
    ``time(200)/time(50)``; ``--skip-mdx2`` times only our commands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dials_mdxbg.testing.pilatus import SweepSpec, import_sweep, write_sweep

SERIES_GROUP = "/entry/image_series"
BINNED_GROUP = "/entry/binned_image_series"
AXES = ("phi", "iy", "ix")
MB = 1e6  # reported "MB" are 10**6 bytes

#: Run keys: (tool, step).
MDX2_IMPORT = "mdx2.import"
MDX2_BIN = "mdx2.bin"
OURS_IMPORT = "ours.import"
OURS_BIN = "ours.bin"
OURS_ONESTEP = "ours.onestep"
MDX2_TWO_STEP = "mdx2.two_step"  # derived: MDX2_IMPORT + MDX2_BIN

#: Table rows: (label, mdx2 key, our key).
ROWS = (
    ("import", MDX2_IMPORT, OURS_IMPORT),
    ("bin from image series", MDX2_BIN, OURS_BIN),
    ("one step vs two steps", MDX2_TWO_STEP, OURS_ONESTEP),
)
LINEARITY_LABELS = {
    MDX2_IMPORT: "mdx2.import_data",
    MDX2_BIN: "mdx2.bin_image_series",
    MDX2_TWO_STEP: "mdx2 two steps (import + bin)",
    OURS_IMPORT: "dials.mdx_import",
    OURS_BIN: "dials.mdx_bin_background (image series)",
    OURS_ONESTEP: "dials.mdx_bin_background (one step)",
}


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
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        sampler = TreeMemorySampler(proc.pid, interval, pss)
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
    if proc.returncode != 0:
        raise BenchmarkError(
            f"command failed with exit code {proc.returncode}:\n  cd {shlex.quote(str(cwd))} && "
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


# --------------------------------------------------------------------------- commands


def executable(name: str) -> str:
    """Find a console script, preferring the running interpreter's environment.

    Args:
        name: Command name.

    Returns:
        Absolute path.

    Raises:
        BenchmarkError: If it is not found.
    """
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise BenchmarkError(f"command not found: {name} (activate the environment first)")
    return found


@dataclass
class Settings:
    """Command options shared by all runs.

    Attributes:
        chunks: HDF5 chunks of the image series (frames, y, x).
        bins: Bin size (frames, y, x).
        valid_range: Inclusive valid count range.
    """

    chunks: tuple[int, int, int]
    bins: tuple[int, int, int]
    valid_range: tuple[int, int]


def mdx2_import_cmd(expt: Path, s: Settings, nproc: int) -> list[str]:
    """``mdx2.import_data`` writing ``M.nxs`` (+ ``datastore/``)."""
    return [
        executable("mdx2.import_data"),
        str(expt),
        "--outfile",
        "M.nxs",
        "--chunks",
        *(str(c) for c in s.chunks),
        "--nproc",
        str(nproc),
    ]


def ours_import_cmd(expt: Path, s: Settings, nproc: int) -> list[str]:
    """``dials.mdx_import`` writing ``X.nxs``."""
    return [
        executable("dials.mdx_import"),
        str(expt),
        "output.data=X.nxs",
        "chunks=" + ",".join(str(c) for c in s.chunks),
        f"mp.nproc={nproc}",
        "output.json=X.json",
    ]


def mdx2_bin_cmd(series: Path, s: Settings, nproc: int) -> list[str]:
    """``mdx2.bin_image_series`` writing ``MB.nxs``."""
    return [
        executable("mdx2.bin_image_series"),
        str(series),
        *(str(b) for b in s.bins),
        "--valid_range",
        *(str(v) for v in s.valid_range),
        "--outfile",
        "MB.nxs",
        "--nproc",
        str(nproc),
    ]


def ours_bin_cmd(source: Path, out_name: str, s: Settings, nproc: int) -> list[str]:
    """``dials.mdx_bin_background`` on an image series or (one step) an experiment list."""
    return [
        executable("dials.mdx_bin_background"),
        str(source),
        "bins=" + ",".join(str(b) for b in s.bins),
        "valid_range=" + ",".join(str(v) for v in s.valid_range),
        f"output.binned={out_name}",
        "output.plot=None",
        f"mp.nproc={nproc}",
    ]


# --------------------------------------------------------------------------- sweep


def sweep_spec(frames: int, modules: Sequence[int]) -> SweepSpec:
    """The benchmark sweep: 1 degree and 1 s per frame, mean background 20 counts.

    Args:
        frames: Number of frames.
        modules: Pilatus modules (fast, slow).

    Returns:
        The spec.
    """
    return SweepSpec(
        n_frames=frames,
        modules=(modules[0], modules[1]),
        osc_width=1.0,
        exposure_time=1.0,
        background=20.0,
    )


def prepare_sweep(workdir: Path, spec: SweepSpec) -> tuple[Path, list[Path]]:
    """Write and import the sweep, or reuse it if ``spec.json`` matches.

    Args:
        workdir: Benchmark work directory.
        spec: The sweep.

    Returns:
        The experiment list and the image files.
    """
    directory = workdir / f"sweep_f{spec.n_frames}_m{spec.modules[0]}x{spec.modules[1]}"
    spec_file = directory / "spec.json"
    wanted = json.loads(json.dumps({"spec": asdict(spec)}))
    paths = [directory.resolve() / spec.image_name(i) for i in range(spec.n_frames)]
    expt = directory.resolve() / "background.expt"
    with contextlib.suppress(OSError, ValueError):
        if (
            json.loads(spec_file.read_text()) == wanted
            and expt.is_file()
            and all(p.is_file() for p in paths)
        ):
            print(f"reusing sweep {directory}", file=sys.stderr)
            return expt, paths
    directory.mkdir(parents=True, exist_ok=True)
    spec_file.unlink(missing_ok=True)
    print(f"writing sweep {directory} ({spec.n_frames} frames, {spec.shape})", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            print(f"  wrote {done}/{total} frames", file=sys.stderr, flush=True)

    paths = write_sweep(directory, spec, progress=progress)
    expt = import_sweep(directory, paths)
    spec_file.write_text(json.dumps(wanted, indent=2) + "\n")
    return expt, paths


def warm_page_cache(paths: Sequence[Path]) -> None:
    """Read the images once so that the first timed command does not pay for cold I/O.

    Args:
        paths: Files to read.
    """
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass


# --------------------------------------------------------------------------- verification


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Temporarily change the working directory.

    Args:
        path: The directory.

    Yields:
        Nothing.
    """
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def missing_virtual_sources(path: Path, dset: h5py.Dataset) -> list[str]:
    """Source files of a virtual dataset that cannot be found.

    Args:
        path: The file holding the dataset.
        dset: The dataset.

    Returns:
        Missing source paths (relative ones resolved against the file's directory).
    """
    if not dset.is_virtual:
        return []
    missing = []
    for vs in dset.virtual_sources():
        if vs.file_name == ".":
            continue
        src = Path(vs.file_name)
        if not src.is_absolute():
            src = path.parent / src
        if not src.is_file():
            missing.append(str(src))
    return sorted(set(missing))


def _slabs(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def compare_image_series(ref: Path, other: Path, labels: tuple[str, str], slab: int) -> list[str]:
    """Check that two image series have identical ``data`` (read in slabs of frames).

    Args:
        ref: First file (may be mdx2's virtual dataset).
        other: Second file.
        labels: Names of the two for messages.
        slab: Frames per read.

    Returns:
        Problems found (empty if identical).
    """
    problems: list[str] = []
    ref, other = ref.resolve(), other.resolve()
    what = f"image series {labels[0]} ({ref}) vs {labels[1]} ({other})"
    missing = [str(p) for p in (ref, other) if not p.is_file()]
    if missing:
        return [f"{what}: file(s) not found: {missing}"]
    with working_directory(ref.parent):
        with h5py.File(ref, "r") as fa, h5py.File(other, "r") as fb:
            try:
                da, db = fa[SERIES_GROUP]["data"], fb[SERIES_GROUP]["data"]
            except KeyError as err:
                return [f"{what}: missing dataset: {err}"]
            for path, dset in ((ref, da), (other, db)):
                gone = missing_virtual_sources(path, dset)
                if gone:
                    problems.append(f"{what}: virtual sources of {path} not found: {gone}")
            if problems:
                return problems
            if da.shape != db.shape:
                return [f"{what}: shapes differ: {da.shape} vs {db.shape}"]
            if da.dtype != db.dtype:
                problems.append(f"{what}: dtypes differ: {da.dtype} vs {db.dtype}")
            n_diff = 0
            first: str | None = None
            for sl in _slabs(da.shape[0], slab):
                a, b = da[sl], db[sl]
                if not np.array_equal(a, b):
                    bad = a != b
                    n_diff += int(bad.sum())
                    if first is None:
                        idx = tuple(int(i) for i in np.argwhere(bad)[0])
                        pos = (idx[0] + sl.start, *idx[1:])
                        first = f"first at (frame, y, x) = {pos}: {a[idx]} vs {b[idx]}"
                del a, b
            if n_diff:
                problems.append(f"{what}: {n_diff} pixels differ; {first}")
    return problems


def compare_binned(ref: Path, other: Path, labels: tuple[str, str], slab: int = 10) -> list[str]:
    """Check that two binned image series agree.

    ``signal`` must satisfy ``np.allclose(rtol=1e-12, atol=0, equal_nan=True)`` with
    identical NaN positions; the ``phi``/``iy``/``ix`` axes must be equal.

    Args:
        ref: First binned file.
        other: Second binned file.
        labels: Names of the two for messages.
        slab: Bins along phi per read.

    Returns:
        Problems found (empty if equal).
    """
    problems: list[str] = []
    what = f"binned {labels[0]} ({ref}) vs {labels[1]} ({other})"
    missing = [str(p) for p in (ref, other) if not p.is_file()]
    if missing:
        return [f"{what}: file(s) not found: {missing}"]
    with h5py.File(ref, "r") as fa, h5py.File(other, "r") as fb:
        try:
            ga, gb = fa[BINNED_GROUP], fb[BINNED_GROUP]
            sa, sb = ga["signal"], gb["signal"]
            axes = [(name, ga[name][()], gb[name][()]) for name in AXES]
        except KeyError as err:
            return [f"{what}: missing dataset: {err}"]
        for name, a, b in axes:
            if a.shape != b.shape:
                problems.append(f"{what}: axis {name} shapes differ: {a.shape} vs {b.shape}")
            elif not np.array_equal(a, b):
                bad = np.flatnonzero(a != b)
                problems.append(
                    f"{what}: axis {name} differs at {bad.size} of {a.size} positions; "
                    f"first at {int(bad[0])}: {a[bad[0]]!r} vs {b[bad[0]]!r}"
                )
        if sa.shape != sb.shape:
            return problems + [f"{what}: signal shapes differ: {sa.shape} vs {sb.shape}"]
        n_nan_pos = n_close = 0
        worst = 0.0
        for sl in _slabs(sa.shape[0], slab):
            a = np.asarray(sa[sl], dtype=np.float64)
            b = np.asarray(sb[sl], dtype=np.float64)
            nan_a, nan_b = np.isnan(a), np.isnan(b)
            n_nan_pos += int((nan_a != nan_b).sum())
            close = np.isclose(a, b, rtol=1e-12, atol=0.0, equal_nan=True)
            n_close += int((~close).sum())
            both = ~(nan_a | nan_b)
            if both.any():
                with np.errstate(divide="ignore", invalid="ignore"):
                    rel = np.abs(a[both] - b[both]) / np.abs(b[both])
                rel = rel[np.isfinite(rel)]
                if rel.size:
                    worst = max(worst, float(rel.max()))
        if n_nan_pos:
            problems.append(f"{what}: NaN positions differ in {n_nan_pos} bins")
        if n_close:
            problems.append(
                f"{what}: {n_close} bins differ beyond rtol=1e-12 (max rel diff {worst:.3g})"
            )
    return problems


# --------------------------------------------------------------------------- statistics


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def summarise(runs: dict[str, list[RunResult]]) -> dict[str, dict[str, float]]:
    """Medians over repeats, plus mdx2's two steps combined.

    For ``mdx2.two_step`` each repeat's wall and CPU time are the sums of import and
    binning, its peak memory the larger of the two and its output the sum.

    Args:
        runs: Results per run key (one per repeat).

    Returns:
        ``{key: {"wall_s", "cpu_s", "output_bytes", "peak_rss_bytes",
        "max_single_rss_bytes"[, "peak_pss_bytes"]}}`` medians.
    """
    summed = ("wall_s", "cpu_s", "output_bytes")
    peaks = ("peak_rss_bytes", "max_single_rss_bytes", "peak_pss_bytes")
    out: dict[str, dict[str, float]] = {}
    for key, results in runs.items():
        if results:
            out[key] = {
                f: _median([getattr(r, f) for r in results])
                for f in summed + peaks
                if getattr(results[0], f) is not None
            }
    if runs.get(MDX2_IMPORT) and runs.get(MDX2_BIN):
        pairs = list(zip(runs[MDX2_IMPORT], runs[MDX2_BIN]))
        two = {f: _median([getattr(a, f) + getattr(b, f) for a, b in pairs]) for f in summed}
        for f in peaks:
            if getattr(pairs[0][0], f) is not None:
                two[f] = _median([max(getattr(a, f), getattr(b, f)) for a, b in pairs])
        out[MDX2_TWO_STEP] = two
    return out


def table_rows(medians: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """The three comparison rows (mdx2 values None when mdx2 was skipped).

    Args:
        medians: Output of ``summarise``.

    Returns:
        One dict per row.
    """
    rows = []
    for label, mdx2_key, ours_key in ROWS:
        m, o = medians.get(mdx2_key), medians[ours_key]
        rows.append(
            {
                "row": label,
                "mdx2_key": mdx2_key,
                "ours_key": ours_key,
                "mdx2_wall_s": m["wall_s"] if m else None,
                "ours_wall_s": o["wall_s"],
                "speedup": (m["wall_s"] / o["wall_s"]) if m and o["wall_s"] > 0 else None,
                "mdx2_peak_rss_bytes": m["peak_rss_bytes"] if m else None,
                "ours_peak_rss_bytes": o["peak_rss_bytes"],
                "mdx2_output_bytes": m["output_bytes"] if m else None,
                "ours_output_bytes": o["output_bytes"],
            }
        )
    return rows


# --------------------------------------------------------------------------- reporting


def machine_info() -> dict[str, Any]:
    """CPU, memory and software versions of this machine."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_total = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    versions: dict[str, str | None] = {"python": platform.python_version()}
    from importlib import metadata

    for dist in ("mdx2", "dials-mdxbg", "numpy", "h5py"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    versions["numpy"] = versions["numpy"] or np.__version__
    versions["h5py"] = versions["h5py"] or h5py.__version__  # Debian's h5py has no metadata
    versions["hdf5"] = h5py.version.hdf5_version
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_model": model or platform.processor() or platform.machine(),
        "processor": platform.processor(),
        "mem_total_bytes": mem_total,
        "platform": platform.platform(),
        "versions": versions,
    }


def _fmt(value: float | None, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    return "–" if value is None else f"{value / scale:{spec}}{suffix}"


def _fmt_size(value: float | None) -> str:
    """Bytes as MB, with enough decimals for small files."""
    if value is None:
        return "–"
    mb = value / MB
    return f"{mb:.0f}" if mb >= 100 else f"{mb:.1f}" if mb >= 1 else f"{mb:.3f}"


def markdown_report(report: dict[str, Any]) -> str:
    """Render the results as markdown.

    Args:
        report: The JSON report.

    Returns:
        Markdown text.
    """
    m = report["machine"]
    s = report["settings"]
    mem = f", {m['mem_total_bytes'] / 2**30:.0f} GiB RAM" if m["mem_total_bytes"] else ""
    v = m["versions"]
    lines = [
        "# dials_mdxbg vs mdx2 benchmark",
        "",
        f"- Machine: {m['cpu_count']} CPUs ({m['usable_cpus']} usable), {m['cpu_model']}{mem}; "
        f"{m['platform']}",
        f"- Software: Python {v['python']}, mdx2 {v['mdx2']}, dials-mdxbg {v['dials-mdxbg']}, "
        f"numpy {v['numpy']}, h5py {v['h5py']} (HDF5 {v['hdf5']})",
        f"- Command: `{report['command']}`",
        f"- Chunks {s['chunks']}, bins {s['bins']}, valid range {s['valid_range']}; "
        f"median of {s['repeats']} repeat(s)",
        "- Wall time of the whole command (interpreter start-up included); peak = summed VmRSS "
        f"of the process tree sampled every {s['sample_interval_s'] * 1000:.0f} ms; output = all "
        "files written (mdx2 import: M.nxs + datastore/, and the log files); MB = 10^6 bytes",
        f"- Verification: {report['verification']['summary']}",
    ]
    if not s["skip_mdx2"]:
        lines.insert(-1, "- Two steps (mdx2) = import + bin: times and outputs summed, peak = max")
    header = (
        "| step | mdx2 wall s | ours wall s | speed-up × | mdx2 peak MB | ours peak MB "
        "| mdx2 output MB | ours output MB |"
    )
    for ds in report["datasets"]:
        shape = " x ".join(str(n) for n in ds["shape"])
        for res in ds["results"]:
            lines += [
                "",
                f"## {ds['frames']} frames, modules {ds['modules'][0]}x{ds['modules'][1]} "
                f"({shape}), nproc = {res['nproc']}",
                "",
                header,
                "|" + "---|" * 8,
            ]
            for row in res["rows"]:
                lines.append(
                    "| "
                    + " | ".join(
                        [
                            row["row"],
                            _fmt(row["mdx2_wall_s"], ".2f"),
                            _fmt(row["ours_wall_s"], ".2f"),
                            _fmt(row["speedup"], ".2f", suffix="×"),
                            _fmt(row["mdx2_peak_rss_bytes"], ".0f", MB),
                            _fmt(row["ours_peak_rss_bytes"], ".0f", MB),
                            _fmt_size(row["mdx2_output_bytes"]),
                            _fmt_size(row["ours_output_bytes"]),
                        ]
                    )
                    + " |"
                )
    for lin in report["linearity"]:
        cols = [f"time({f})/time({lin['base_frames']})" for f in lin["frames"]]
        ideal = ", ".join(f"{f / lin['base_frames']:.2f}" for f in lin["frames"])
        span = f"{lin['base_frames']}->{lin['frames'][-1]}"
        cols += [f"ms per frame ({span})", "fixed s"]
        lines += [
            "",
            f"## Linearity, nproc = {lin['nproc']} (ideal ratio without fixed costs: {ideal})",
            "",
            "Time = fixed + frames x per-frame cost, fitted through the two runs; a ratio",
            "below the ideal is the fixed start-up (interpreter, DIALS, experiments) showing.",
            "",
            "| command | " + " | ".join(cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for key, ratios in lin["ratios"].items():
            cells = [_fmt(ratios.get(str(f)), ".2f") for f in lin["frames"]]
            fit = lin.get("per_frame", {}).get(key)
            cells += (
                [_fmt(fit["s_per_frame"] * 1e3, ".1f"), _fmt(fit["fixed_s"], ".2f")]
                if fit
                else ["", ""]
            )
            lines.append(f"| {LINEARITY_LABELS[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def linearity(datasets: list[dict[str, Any]], nprocs: Sequence[int]) -> list[dict[str, Any]]:
    """Median wall time ratios relative to the smallest number of frames.

    Args:
        datasets: Per-frames results (same modules).
        nprocs: The nproc values.

    Returns:
        One entry per nproc (empty if only one frames value).
    """
    if len(datasets) < 2:
        return []
    ordered = sorted(datasets, key=lambda d: d["frames"])
    base = ordered[0]
    out = []
    for nproc in nprocs:

        def medians_of(ds: dict[str, Any], n: int = nproc) -> dict[str, dict[str, float]]:
            return next(r["medians"] for r in ds["results"] if r["nproc"] == n)

        base_m = medians_of(base)
        last = ordered[-1]
        ratios: dict[str, dict[str, float]] = {}
        per_frame: dict[str, dict[str, float]] = {}
        for key in LINEARITY_LABELS:
            if key not in base_m:
                continue
            ratios[key] = {
                str(ds["frames"]): medians_of(ds)[key]["wall_s"] / base_m[key]["wall_s"]
                for ds in ordered[1:]
                if key in medians_of(ds)
            }
            if key in medians_of(last):
                # A straight line through the smallest and largest runs: the cost
                # of one more frame, and the fixed part (start-up, set-up).
                t0, t1 = base_m[key]["wall_s"], medians_of(last)[key]["wall_s"]
                slope = (t1 - t0) / (last["frames"] - base["frames"])
                per_frame[key] = {"s_per_frame": slope, "fixed_s": t0 - slope * base["frames"]}
        out.append(
            {
                "nproc": nproc,
                "base_frames": base["frames"],
                "frames": [ds["frames"] for ds in ordered[1:]],
                "ratios": ratios,
                "per_frame": per_frame,
            }
        )
    return out


# --------------------------------------------------------------------------- driver


@dataclass
class Verification:
    """Checks done so far.

    Attributes:
        checks: Descriptions of the comparisons that passed.
        problems: Differences found.
    """

    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, description: str, problems: list[str]) -> None:
        """Record one comparison.

        Args:
            description: What was compared.
            problems: Differences (empty if it passed).
        """
        print(f"  check {description}: {'FAILED' if problems else 'ok'}", file=sys.stderr)
        if problems:
            self.problems.extend(problems)
        else:
            self.checks.append(description)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)


def benchmark_dataset(
    args: argparse.Namespace, settings: Settings, frames: int, verification: Verification
) -> dict[str, Any]:
    """Run all timings and checks for one sweep.

    Args:
        args: Command-line arguments.
        settings: Command options.
        frames: Number of frames.
        verification: Collects the checks.

    Returns:
        The dataset's part of the JSON report.

    Raises:
        BenchmarkError: If a command fails or outputs differ.
    """
    workdir: Path = args.workdir.resolve()
    spec = sweep_spec(frames, args.modules)
    expt, images = prepare_sweep(workdir, spec)
    warm_page_cache(images)
    mod = f"{spec.modules[0]}x{spec.modules[1]}"
    ds_dir = workdir / "runs" / f"f{frames}_m{mod}"
    slab = settings.chunks[0] if 0 < settings.chunks[0] <= 32 else 10
    reference_binned: Path | None = None
    results = []
    for nproc in args.nproc:
        runs: dict[str, list[RunResult]] = {
            k: [] for k in (MDX2_IMPORT, MDX2_BIN, OURS_IMPORT, OURS_BIN, OURS_ONESTEP)
        }
        for rep in range(args.repeats):
            print(f"{frames} frames, nproc {nproc}, repeat {rep + 1}", file=sys.stderr)
            base = ds_dir / f"nproc{nproc}" / f"rep{rep}"
            d = {
                k: base / k.replace(".", "_")
                for k in (MDX2_IMPORT, MDX2_BIN, OURS_IMPORT, OURS_BIN, OURS_ONESTEP)
            }

            def timed(key: str, cmd: list[str], d: dict[str, Path] = d) -> None:
                runs[key].append(run_timed(key, cmd, d[key], args.sample_interval, args.pss))

            if not args.skip_mdx2:
                timed(MDX2_IMPORT, mdx2_import_cmd(expt, settings, nproc))
            timed(OURS_IMPORT, ours_import_cmd(expt, settings, nproc))
            if not args.skip_mdx2:
                timed(MDX2_BIN, mdx2_bin_cmd(d[MDX2_IMPORT] / "M.nxs", settings, nproc))
            timed(OURS_BIN, ours_bin_cmd(d[OURS_IMPORT] / "X.nxs", "Y.nxs", settings, nproc))
            timed(OURS_ONESTEP, ours_bin_cmd(expt, "Z.nxs", settings, nproc))

            if rep == 0:
                tag = f"{frames} frames, nproc {nproc}"
                ours_y, ours_z = d[OURS_BIN] / "Y.nxs", d[OURS_ONESTEP] / "Z.nxs"
                if not args.skip_mdx2:
                    mdx2_m, mdx2_mb = d[MDX2_IMPORT] / "M.nxs", d[MDX2_BIN] / "MB.nxs"
                    verification.add(
                        f"{tag}: image series mdx2 == ours",
                        compare_image_series(
                            mdx2_m, d[OURS_IMPORT] / "X.nxs", ("mdx2", "ours"), slab
                        ),
                    )
                    verification.add(
                        f"{tag}: binned mdx2 == ours (two steps)",
                        compare_binned(mdx2_mb, ours_y, ("mdx2", "ours two-step")),
                    )
                    verification.add(
                        f"{tag}: binned mdx2 == ours (one step)",
                        compare_binned(mdx2_mb, ours_z, ("mdx2", "ours one-step")),
                    )
                verification.add(
                    f"{tag}: binned ours two steps == one step",
                    compare_binned(ours_y, ours_z, ("ours two-step", "ours one-step")),
                )
                if reference_binned is None:
                    reference_binned = ds_dir / f"reference_binned_nproc{nproc}.nxs"
                    shutil.copyfile(ours_y, reference_binned)
                else:
                    verification.add(
                        f"{tag}: binned ours == ours with nproc {args.nproc[0]}",
                        compare_binned(reference_binned, ours_y, ("first nproc", "this nproc")),
                    )
                if verification.problems:
                    raise BenchmarkError(
                        "outputs differ (kept in "
                        + str(base)
                        + "):\n  "
                        + "\n  ".join(verification.problems)
                    )
            if not args.keep:
                for path in d.values():
                    _remove(path)
        medians = summarise(runs)
        results.append(
            {
                "nproc": nproc,
                "runs": {k: [asdict(r) for r in v] for k, v in runs.items() if v},
                "medians": medians,
                "rows": table_rows(medians),
            }
        )
    return {
        "frames": frames,
        "modules": list(spec.modules),
        "shape": [frames, *spec.shape],
        "spec": asdict(spec),
        "sweep_dir": str(expt.parent),
        "expt": str(expt),
        "input_bytes": sum(p.stat().st_size for p in images),
        "results": results,
    }


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The parsed arguments.
    """
    p = argparse.ArgumentParser(
        description="Time and compare mdx2 and dials_mdxbg on a synthetic Pilatus sweep.",
        epilog="Example: python benchmarks/compare_mdx2.py --frames 50 --modules 5 12 "
        "--nproc 1 2 --workdir bench",
    )
    p.add_argument(
        "--frames",
        type=_positive,
        nargs="+",
        default=[50],
        help="number(s) of frames; several add linearity ratios (default 50)",
    )
    p.add_argument(
        "--modules",
        type=_positive,
        nargs=2,
        default=[5, 12],
        metavar=("FAST", "SLOW"),
        help="Pilatus modules: 5 12 = 6M (default), 3 2 = a small test detector",
    )
    p.add_argument(
        "--nproc", type=_positive, nargs="+", default=[1], help="nproc value(s) (default 1)"
    )
    p.add_argument(
        "--repeats", type=_positive, default=1, help="timed repeats, median reported (default 1)"
    )
    p.add_argument(
        "--chunks",
        type=int,
        nargs=3,
        default=[10, 211, 493],
        metavar=("F", "Y", "X"),
        help="image series HDF5 chunks (default 10 211 493)",
    )
    p.add_argument(
        "--bins",
        type=_positive,
        nargs=3,
        default=[10, 20, 20],
        metavar=("F", "Y", "X"),
        help="bin size (default 10 20 20)",
    )
    p.add_argument(
        "--valid-range",
        type=int,
        nargs=2,
        default=[0, 200],
        metavar=("MIN", "MAX"),
        help="inclusive valid count range for binning (default 0 200)",
    )
    p.add_argument(
        "--workdir", type=Path, default=Path("bench"), help="work directory (default bench)"
    )
    p.add_argument("--json", type=Path, help="JSON output (default WORKDIR/results.json)")
    p.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="only rebuild the tables of an earlier run's JSON (to --markdown/--json and stdout)",
    )
    p.add_argument("--markdown", type=Path, help="markdown output (default WORKDIR/results.md)")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the outputs of the timed runs (default: deleted after verification)",
    )
    p.add_argument(
        "--skip-mdx2",
        action="store_true",
        help="time only our commands (then only our one-step vs two-step outputs are compared)",
    )
    p.add_argument(
        "--sample-interval",
        type=float,
        default=0.02,
        help="memory sampling interval in seconds (default 0.02)",
    )
    p.add_argument(
        "--pss",
        action="store_true",
        help="also sample the summed PSS (shared pages counted once; JSON only)",
    )
    args = p.parse_args(argv)
    if args.valid_range[0] > args.valid_range[1]:
        p.error("--valid-range MIN must be <= MAX")
    if args.sample_interval <= 0:
        p.error("--sample-interval must be > 0")
    args.frames = sorted(set(args.frames))
    args.nproc = list(dict.fromkeys(args.nproc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        Exit status: 0 on success, 1 if a command failed or the outputs differ.
    """
    args = parse_args(argv)
    if args.render:
        # Re-derive the summary tables of an earlier run (no command is run).
        report = json.loads(args.render.read_text())
        report["linearity"] = linearity(report["datasets"], report["settings"]["nproc"])
        markdown = markdown_report(report)
        if args.markdown:
            args.markdown.write_text(markdown)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(markdown)
        return 0
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(list(argv))
    settings = Settings(
        chunks=(args.chunks[0], args.chunks[1], args.chunks[2]),
        bins=(args.bins[0], args.bins[1], args.bins[2]),
        valid_range=(args.valid_range[0], args.valid_range[1]),
    )
    args.workdir.mkdir(parents=True, exist_ok=True)
    json_path = args.json or args.workdir / "results.json"
    md_path = args.markdown or args.workdir / "results.md"
    verification = Verification()
    try:
        datasets = [
            benchmark_dataset(args, settings, frames, verification) for frames in args.frames
        ]
    except BenchmarkError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    summary = f"all {len(verification.checks)} output comparisons passed"
    if args.skip_mdx2:
        summary += " (mdx2 skipped: only our one-step vs two-step and across nproc)"
    report = {
        "command": command,
        "argv": list(sys.argv if argv is None else argv),
        "machine": machine_info(),
        "settings": {
            "frames": args.frames,
            "modules": args.modules,
            "nproc": args.nproc,
            "repeats": args.repeats,
            "chunks": list(settings.chunks),
            "bins": list(settings.bins),
            "valid_range": list(settings.valid_range),
            "skip_mdx2": args.skip_mdx2,
            "keep": args.keep,
            "sample_interval_s": args.sample_interval,
            "pss": args.pss,
            "workdir": str(args.workdir.resolve()),
        },
        "verification": {"summary": summary, "checks": verification.checks},
        "datasets": datasets,
        "linearity": linearity(datasets, args.nproc),
    }
    markdown = markdown_report(report)
    for path in (json_path, md_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
