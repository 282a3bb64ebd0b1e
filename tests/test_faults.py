"""Fault injection: both commands, run as a user runs them, over bad inputs and faults.

Every case is one row of :data:`CASES` and goes through one checker, which holds the
whole promise of issue 11 at once:

* the exit status is non-zero;
* stderr is exactly one line, ``dials.mdx_xxx: error: ...``, short, naming what the case
  says it must name, with no traceback, object repr, errno tuple or temporary name;
* the files on disk afterwards are exactly those before: nothing new (not even a hidden
  temporary or the log of the failed run) and every existing file byte-identical. Each
  case starts with outputs of an earlier run lying where this run would write, so a
  failed run that clobbers them is caught too.

Signal cases run the command in its own session, wait (polling) until it is writing,
signal the whole process group as a terminal or a batch scheduler does, then check the
same promise (SIGKILL cannot be caught: there the leftovers must be recognisable by the
killed pid) and re-run the command, which must succeed, remove stale leftovers of dead
runs and say so in its log.

Faults that need privileges (a tiny tmpfs for disk full, a read-only bind mount) skip
cleanly where ``mount`` is not permitted.

``FAULTS_REPORT=<file>`` appends one line per case (outcome and what failed), which is
how the before/after tables of the issue are made.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import BIN, run
from realdata import realdata_file

IMPORT = "dials.mdx_import"
BINNING = "dials.mdx_bin_background"
THERM = "single/Therm_6_2.nxs"  # real NXmx master whose virtual-dataset source is missing
EIGER_MASTER = "single/dectris_eiger_master.h5"  # real Eiger master without its data file

MAX_LINE = 400  # characters: a sentence or two with a path, never a pasted traceback
MARKER = b"output of an earlier run\n"
# Outputs of an earlier run, lying where a run of either command writes by default or
# where the cases send their outputs: a failed run must leave each byte-identical.
PREVIOUS = (
    "data.nxs",
    "out.nxs",
    "out_parts/out_00000.nxs",
    "binned.nxs",
    "binned.png",
    "binned.html",
    "b.nxs",
    "b.html",
    "dials.mdx_import.log",
    "dials.mdx_bin_background.log",
)
BAD_TEXT = re.compile(
    r"Traceback|File \"| object at 0x|<[\w.]+ object|<class '|\[Errno \d+\]"
    r"|\b[A-Z]\w*(Error|Exception)\b|\.part-|^Sorry"
)
LONG_FRAMES = 400  # long enough that a signal lands while the output is being written


# --------------------------------------------------------------------------- the file tree


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (hidden ones too): kind and content hash or link target."""
    tree: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                tree[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                tree[rel] = ("dir",)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                tree[rel] = ("file", digest)
    return tree


def tree_changes(before: dict, after: dict) -> list[str]:
    """What differs between two snapshots, as short readable items."""
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    out = []
    for label, names in (("new", added), ("lost", removed), ("changed", changed)):
        if names:
            shown = ", ".join(names[:6]) + (f" (+{len(names) - 6})" if len(names) > 6 else "")
            out.append(f"{label}: {shown}")
    return out


# --------------------------------------------------------------------------- the checker


def message_problems(command: str, proc, expect: tuple[str, ...]) -> list[str]:
    """What is wrong with a failed run's exit status and stderr."""
    problems = []
    if proc.returncode == 0:
        problems.append("exit status 0")
    elif proc.returncode < 0:
        problems.append(f"crashed ({signal.Signals(-proc.returncode).name})")
    if "Traceback" in proc.stderr or "Traceback" in proc.stdout:
        problems.append("traceback")
    lines = proc.stderr.strip("\n").split("\n") if proc.stderr.strip() else []
    if len(lines) != 1:
        first = lines[0][:120] if lines else ""
        problems.append(f"{len(lines)} stderr lines ({first!r}...)")
        return problems
    line = lines[0]
    if not line.startswith(f"{command}: error: "):
        problems.append(f"not '{command}: error: ...': {line[:160]!r}")
    if len(line) > MAX_LINE:
        problems.append(f"line of {len(line)} characters: {line[:160]!r}...")
    bad = BAD_TEXT.search(line)
    if bad:
        problems.append(f"unreadable ({bad.group(0)!r}): {line[:300]!r}")
    missing = [e for e in expect if e.lower() not in line.lower()]
    if missing:
        problems.append(f"does not say {missing}: {line[:300]!r}")
    return problems


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One bad input or fault.

    Attributes:
        name: unique id.
        kind: the class of failure (see ``KINDS``).
        command: the command run.
        args: its arguments; ``{key}`` names an input the case context makes (see ``Ctx``).
        expect: what the error line must say (case-insensitive fragments, e.g. file names).
        setup: damages or prepares inputs before the snapshot.
        fault: None for a plain run, else a signal (``signal.SIGINT`` ...) sent mid-write.
        cwd: working directory relative to the case directory.
        outputs: for signal cases, the files the successful re-run writes.
        env: environment variables of the run (``{key}`` as in args).
    """

    name: str
    kind: str
    command: str
    args: tuple[str, ...]
    expect: tuple[str, ...] = ()
    setup: Callable | None = None
    fault: int | None = None
    cwd: str = "."
    outputs: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


KINDS = {
    "collide": "an output resolves to an input or to another output of the run",
    "silent": "input that gave a silently wrong result",
    "signal": "SIGINT / SIGTERM / SIGKILL mid-write, then a re-run",
    "dask": "dask failures (loopback only)",
    "location": "output locations: missing, a directory, read-only",
    "disk": "disk full (2 MiB tmpfs)",
    "corrupt": "corrupt or truncated files of every kind read",
    "input": "other bad input and impossible parameters",
}


class Ctx:
    """One case's directory, with inputs made (copied or damaged) on first use.

    ``ctx[key]`` makes the input and returns its path as given on the command line:
    relative to the case directory for copies (which the snapshot covers), absolute for
    shared read-only fixtures. Keys: sweep, images, series, split, mdx2, dmask, mmask,
    eiger, big, bigseries, long, longseries, full (2 MiB tmpfs), ro (read-only mount),
    scheduler (a dask scheduler with no workers), therm and eiger_master (real masters
    without their data files, in shared/realdata).
    """

    def __init__(self, request, work: Path):
        self.request = request
        self.work = work
        self.made: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        if key not in self.made:
            self.made[key] = str(getattr(self, f"make_{key}")())
        return self.made[key]

    def fixture(self, name: str):
        return self.request.getfixturevalue(name)

    def copy_sweep(self, dirname: str = "sw") -> Path:
        """The 7-frame sweep copied into ``dirname``, its experiment list pointing there."""
        src = Path(self.fixture("small_sweep"))
        dst = self.work / dirname
        shutil.copytree(src.parent, dst, ignore=shutil.ignore_patterns("*.log"))
        expt = json.loads(src.read_text())
        expt["imageset"][0]["template"] = str(dst.resolve() / "bkg_#####.cbf")
        (dst / "background.expt").write_text(json.dumps(expt))
        return dst / "background.expt"

    def make_sweep(self) -> str:
        return str(self.copy_sweep().relative_to(self.work))

    def make_images(self) -> str:
        self["sweep"]
        return " ".join(f"sw/bkg_{i:05d}.cbf" for i in range(1, 8))

    def make_series(self) -> str:
        shutil.copy(self.fixture("small_series"), self.work / "series.nxs")
        return "series.nxs"

    def make_split(self) -> str:
        main = Path(self.fixture("small_split"))
        shutil.copy(main, self.work / "split.nxs")
        shutil.copytree(main.with_name("split_parts"), self.work / "split_parts")
        return "split.nxs"

    def make_mdx2(self) -> str:
        main = Path(self.fixture("small_mdx2"))
        shutil.copy(main, self.work / "mdx.nxs")
        shutil.copytree(main.parent / "datastore", self.work / "datastore")
        return "mdx.nxs"

    def make_dmask(self) -> str:
        """A dials.generate_mask-style mask (tuple of one flex.bool, True = good)."""
        from dials.array_family import flex

        good = np.ones((195, 487), bool)
        good[50:60, 100:120] = False
        with open(self.work / "pixels.mask", "wb") as fh:
            pickle.dump((flex.bool(good),), fh)
        return "pixels.mask"

    def make_mmask(self) -> str:
        """An mdx2 mask (/entry/mask NXdata, True = excluded) of the series' shape."""
        with h5py.File(self.work / "mask.nxs", "w") as f:
            group = f.create_group("entry/mask")
            group.attrs["NX_class"] = "NXdata"
            group.attrs["signal"] = "signal"
            mask = np.zeros((7, 195, 487), bool)
            mask[:, 10:20, 10:40] = True
            group.create_dataset("signal", data=mask)
        return "mask.nxs"

    def make_eiger(self) -> str:
        master = Path(self.fixture("small_eiger"))
        shutil.copytree(master.parent, self.work / "eiger")
        return f"eiger/{master.name}"

    def make_big(self) -> str:
        return str(self.fixture("sweep"))

    def make_bigseries(self) -> str:
        return str(self.fixture("our_import"))

    def make_long(self) -> str:
        return str(self.fixture("long_sweep"))

    def make_longseries(self) -> str:
        return str(self.fixture("long_series"))

    def make_scheduler(self) -> str:
        return self.fixture("idle_scheduler")

    def make_therm(self) -> str:
        return str(realdata_file(THERM))  # skips where shared/realdata is absent

    def make_eiger_master(self) -> str:
        return str(realdata_file(EIGER_MASTER))

    def make_full(self) -> str:
        """A 2 MiB tmpfs at ./full (unmounted at teardown); skip where mount is refused."""
        return str(self._mount("full", ["-t", "tmpfs", "-o", "size=2m", "tmpfs"]))

    def make_ro(self) -> str:
        """./ro: a read-only bind mount of ./ro_src, which holds an earlier run's files."""
        src = self.work / "ro_src"
        for name in ("data.nxs", "binned.nxs", "dials.mdx_import.log"):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(MARKER)
        target = self._mount("ro", ["--bind", str(src)])
        remount = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(target)], capture_output=True, text=True
        )
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
        return str(target)

    def _mount(self, name: str, how: list[str]) -> Path:
        target = self.work / name
        target.mkdir()
        done = subprocess.run(["mount", *how, str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            target.rmdir()
            pytest.skip(f"mount not permitted here: {done.stderr.strip()}")
        self.request.addfinalizer(
            lambda: subprocess.run(["umount", "-l", str(target)], capture_output=True)
        )
        return target


# Setups: each takes the context and damages or prepares its inputs.


def in_sweep(transform: Callable[[Path], None], frame: int = 4) -> Callable:
    """Apply ``transform`` to image ``frame`` of the copied sweep."""

    def setup(ctx: Ctx) -> None:
        ctx["sweep"]
        transform(ctx.work / "sw" / f"bkg_{frame:05d}.cbf")

    return setup


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(7).bytes(path.stat().st_size))


def emptied(path: Path) -> None:
    path.write_bytes(b"")


def made_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def other_size(frame: int) -> Callable:
    """Image ``frame`` of the 487 x 195 sweep replaced by one of the 1475 x 407 sweep."""

    def setup(ctx: Ctx) -> None:
        ctx["sweep"]
        name = f"bkg_{frame:05d}.cbf"
        shutil.copy(Path(ctx["big"]).parent / name, ctx.work / "sw" / name)

    return setup


def removed(path: Path) -> None:
    path.unlink()


def on_file(key: str, rel: str, transform: Callable[[Path], None]) -> Callable:
    """Make input ``key``, then apply ``transform`` to the file ``rel`` of it."""

    def setup(ctx: Ctx) -> None:
        ctx[key]
        transform(ctx.work / rel)

    return setup


def series_edit(edit: Callable[[h5py.Group], None], key: str = "series") -> Callable:
    """Edit /entry/image_series of the copied series in place."""

    def setup(ctx: Ctx) -> None:
        with h5py.File(ctx.work / ctx[key], "r+") as f:
            edit(f["entry/image_series"])

    return setup


def set_exposure(values: list[float] | np.ndarray) -> Callable:
    def edit(group: h5py.Group) -> None:
        del group["exposure_times"]
        group.create_dataset("exposure_times", data=np.asarray(values, np.float64))

    return series_edit(edit)


def exposure_with(frame: int, value: float) -> Callable:
    times = np.full(7, 2.0)
    times[frame] = value
    return set_exposure(times)


def zero_frames(group: h5py.Group) -> None:
    ny, nx = group["data"].shape[1:]
    for name in ("data", "phi", "exposure_times"):
        del group[name]
    group.create_dataset(
        "data", shape=(0, ny, nx), maxshape=(None, ny, nx), chunks=(1, ny, nx), dtype=np.int32
    )
    group.create_dataset("phi", data=np.zeros(0))
    group.create_dataset("exposure_times", data=np.zeros(0))


def corrupt_chunk(group: h5py.Group) -> None:
    """Flip bytes inside the first stored chunk (its deflate stream becomes invalid)."""
    dset = group["data"]
    mask, payload = dset.id.read_direct_chunk((0, 0, 0))
    data = bytearray(payload)
    for i in range(20, min(len(data), 400)):
        data[i] ^= 0x5A
    dset.id.write_direct_chunk((0, 0, 0), bytes(data), mask)


def corrupt_datastore_chunk(ctx: Ctx) -> None:
    ctx["mdx2"]
    with h5py.File(ctx.work / "datastore" / "mdx_0.nxs", "r+") as f:
        corrupt_chunk(f["entry/image_series"])


def expt_edit(edit: Callable[[dict], None], name: str = "edited.expt") -> Callable:
    """An edited copy of the sweep's experiment list, as ``name``."""

    def setup(ctx: Ctx) -> None:
        expt = json.loads((ctx.work / ctx["sweep"]).read_text())
        edit(expt)
        (ctx.work / name).write_text(json.dumps(expt))

    return setup


def expt_exposure(values: list[float]) -> Callable:
    def edit(expt: dict) -> None:
        expt["scan"][0]["exposure_time"] = values

    return expt_edit(edit)


def expt_images_gone(expt: dict) -> None:
    expt["imageset"][0]["template"] = "/nonexistent/images/bkg_#####.cbf"


def write(rel: str, content: bytes | str) -> Callable:
    def setup(ctx: Ctx) -> None:
        data = content.encode() if isinstance(content, str) else content
        (ctx.work / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx.work / rel).write_bytes(data)

    return setup


def empty_experiment_list(ctx: Ctx) -> None:
    from dxtbx.model.experiment_list import ExperimentList

    ExperimentList().as_file(str(ctx.work / "empty.expt"))


def reflection_table(ctx: Ctx) -> None:
    from dials.array_family import flex

    table = flex.reflection_table()
    table["id"] = flex.int([0, 0])
    table["xyzobs.px.value"] = flex.vec3_double([(1, 2, 3), (4, 5, 6)])
    table.as_file(str(ctx.work / "strong.refl"))


def pickle_of(obj) -> Callable:
    def setup(ctx: Ctx) -> None:
        (ctx.work / "odd.mask").write_bytes(pickle.dumps(obj))

    return setup


def mmask_edit(edit: Callable[[Path], None]) -> Callable:
    def setup(ctx: Ctx) -> None:
        ctx["series"]
        edit(ctx.work / ctx["mmask"])

    return setup


def mmask_wrong_shape(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        del f["entry/mask/signal"]
        f["entry/mask"].create_dataset("signal", data=np.zeros((7, 10, 10), bool))


def mmask_no_group(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        del f["entry/mask"]
        f.create_group("entry/other")


def symlink(name: str, key: str, rel: str | None = None) -> Callable:
    """``name`` -> an input (``rel`` inside the case directory, default ``ctx[key]``)."""

    def setup(ctx: Ctx) -> None:
        target = ctx[key]
        os.symlink(rel or target, ctx.work / name)

    return setup


def symlink_loop(name: str) -> Callable:
    def setup(ctx: Ctx) -> None:
        (ctx.work / name).symlink_to(name)

    return setup


def hardlink(name: str, rel: str) -> Callable:
    def setup(ctx: Ctx) -> None:
        ctx["sweep"]
        os.link(ctx.work / rel, ctx.work / name)

    return setup


def sweep_in(dirname: str) -> Callable:
    def setup(ctx: Ctx) -> None:
        ctx.copy_sweep(dirname)

    return setup


def mkdir(rel: str) -> Callable:
    def setup(ctx: Ctx) -> None:
        (ctx.work / rel).mkdir(parents=True)
        (ctx.work / rel / "keep.txt").write_bytes(MARKER)

    return setup


def fill_disk(leave: int) -> Callable:
    """Fill ./full (the tmpfs) but for ``leave`` bytes, with an earlier file at full/out.nxs."""

    def setup(ctx: Ctx) -> None:
        full = Path(ctx["full"])
        (full / "out.nxs").write_bytes(MARKER)
        st = os.statvfs(full)
        free = st.f_bavail * st.f_frsize - leave
        with open(full / "filler", "wb", buffering=0) as fh:
            try:
                fh.write(b"\0" * max(free, 0))
                while leave == 0:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass  # full

    return setup


def eiger_without_data(ctx: Ctx) -> None:
    master = ctx.work / ctx["eiger"]
    for data in master.parent.glob("*_data_*.h5"):
        data.unlink()


def binned_map(ctx: Ctx) -> None:
    """A binned map where an image series is expected."""
    with h5py.File(ctx.work / "old.nxs", "w") as f:
        f.attrs["mdx2_version"] = "1.0.5"
        group = f.create_group("entry/binned_image_series")
        group.create_dataset("signal", data=np.ones((2, 3, 4)))


def both(*setups: Callable) -> Callable:
    def setup(ctx: Ctx) -> None:
        for s in setups:
            s(ctx)

    return setup


def C(name, kind, command, *args, **kw) -> Case:
    return Case(name, kind, command, tuple(args), **kw)


IM, BN = IMPORT, BINNING
OUT, BOUT, NOPLOT = "output.data=out.nxs", "output.binned=b.nxs", "output.plot=None"
IM_OUTPUTS = ("out.nxs", "out.json", "dials.mdx_import.log")
BIN_OUTPUTS = ("b.nxs", "b.json", "b.html", "binned.png", "dials.mdx_bin_background.log")
DASK_IDLE = ("mp.method=dask", "mp.dask.scheduler={scheduler}", "mp.dask.worker_timeout=3")
# A PATH of no folder that has sbatch: the case must not reach a real SLURM installed here.
NO_SBATCH = os.pathsep.join(
    d for d in os.environ.get("PATH", "").split(os.pathsep) if not shutil.which("sbatch", path=d)
)

CASES = [
    # ---- outputs colliding with inputs, or with each other
    C("I-data-is-expt", "collide", IM, "{sweep}", "output.data=sw/background.expt",
      expect=("background.expt", "output.data")),
    C("I-data-is-image", "collide", IM, "{sweep}", "output.data=sw/bkg_00003.cbf",
      expect=("bkg_00003.cbf",)),
    C("I-data-is-image-given", "collide", IM, "{images}", "output.data=sw/bkg_00001.cbf",
      expect=("bkg_00001.cbf",)),
    C("I-data-is-mask", "collide", IM, "{sweep}", "mask={dmask}", "output.data=pixels.mask",
      expect=("pixels.mask",)),
    C("I-json-is-expt", "collide", IM, "{sweep}", OUT, "output.json=sw/background.expt",
      expect=("background.expt", "output.json")),
    C("I-log-is-image", "collide", IM, "{sweep}", OUT, "output.log=sw/bkg_00001.cbf",
      expect=("bkg_00001.cbf", "output.log")),
    C("I-data-via-symlink", "collide", IM, "{sweep}", "output.data=link.nxs",
      setup=symlink("link.nxs", "sweep"), expect=("link.nxs",)),
    C("I-data-via-dir-symlink", "collide", IM, "{sweep}", "output.data=alias/bkg_00002.cbf",
      setup=symlink("alias", "sweep", "sw"), expect=("bkg_00002.cbf",)),
    C("I-data-is-hardlink", "collide", IM, "{sweep}", "output.data=hard.cbf",
      setup=hardlink("hard.cbf", "sw/bkg_00005.cbf"), expect=("hard.cbf",)),
    C("I-parts-folder-is-input-dir", "collide", IM, "sw_parts/background.expt",
      "output.data=sw.nxs", "output.layout=split", setup=sweep_in("sw_parts"),
      expect=("sw_parts",)),
    C("I-data-equals-json", "collide", IM, "{sweep}", OUT, "output.json=out.nxs",
      expect=("output.data", "output.json")),
    C("I-log-equals-data", "collide", IM, "{sweep}", OUT, "output.log=out.nxs",
      expect=("output.data", "output.log")),
    C("B-binned-is-series", "collide", BN, "{series}", "output.binned=series.nxs",
      expect=("series.nxs", "output.binned")),
    C("B-plot-is-series", "collide", BN, "{series}", BOUT, "output.plot=series.nxs",
      expect=("series.nxs", "output.plot")),
    C("B-json-is-series", "collide", BN, "{series}", BOUT, "output.json=series.nxs",
      expect=("series.nxs",)),
    C("B-log-is-series", "collide", BN, "{series}", BOUT, "output.log=series.nxs",
      expect=("series.nxs",)),
    C("B-binned-is-vds-part", "collide", BN, "{split}", "output.binned=split_parts/split_00000.nxs",
      expect=("split_00000.nxs",)),
    C("B-binned-is-mdx2-datastore", "collide", BN, "{mdx2}",
      "output.binned=datastore/mdx_1.nxs", expect=("mdx_1.nxs",)),
    C("B-plot-is-mdx2-mask", "collide", BN, "{series}", "input.mdx2_mask={mmask}", BOUT,
      "output.plot=mask.nxs", expect=("mask.nxs",)),
    C("B-binned-is-expt", "collide", BN, "{sweep}", "output.binned=sw/background.expt",
      expect=("background.expt",)),
    C("B-plot-is-image", "collide", BN, "{sweep}", BOUT, "output.plot=sw/bkg_00004.cbf",
      expect=("bkg_00004.cbf",)),
    C("B-binned-is-frames-mask", "collide", BN, "{sweep}", "frames.mask={dmask}",
      "output.binned=pixels.mask", expect=("pixels.mask",)),
    C("B-log-via-symlink", "collide", BN, "{series}", BOUT, "output.log=l.log",
      setup=symlink("l.log", "series"), expect=("l.log",)),
    C("B-binned-equals-plot", "collide", BN, "{series}", BOUT, "output.plot=b.nxs",
      expect=("output.binned", "output.plot")),
    C("B-json-equals-binned", "collide", BN, "{series}", BOUT, "output.json=./b.nxs",
      expect=("output.binned", "output.json")),
    # ---- silently wrong results
    C("I-nxmx-vds-source-missing", "silent", IM, "{therm}", OUT, "image_range=1,2",
      expect=("Therm_6_2_000001.h5",)),
    C("B-nxmx-vds-source-missing", "silent", BN, "{therm}", BOUT, "frames.image_range=1,2",
      expect=("Therm_6_2_000001.h5",)),
    C("I-eiger-master-without-data", "silent", IM, "{eiger_master}", OUT,
      expect=("dectris_eiger_master.h5", "data_000001")),
    C("B-eiger-master-without-data", "silent", BN, "{eiger_master}", BOUT,
      expect=("dectris_eiger_master.h5", "data_000001")),
    C("I-synthetic-eiger-data-missing", "silent", IM, "{eiger}", OUT, setup=eiger_without_data,
      expect=("eiger_data_000001.h5",)),
    C("B-synthetic-eiger-data-missing", "silent", BN, "{eiger}", BOUT, setup=eiger_without_data,
      expect=("eiger_data_000001.h5",)),
    C("B-series-exposure-zero", "silent", BN, "{series}", BOUT, setup=exposure_with(2, 0.0),
      expect=("series.nxs", "exposure", "3")),
    C("B-series-exposure-negative", "silent", BN, "{series}", BOUT, setup=exposure_with(4, -1.0),
      expect=("series.nxs", "exposure", "5")),
    C("B-series-exposure-nan", "silent", BN, "{series}", BOUT,
      setup=exposure_with(0, float("nan")), expect=("series.nxs", "exposure", "1")),
    C("B-series-exposure-inf", "silent", BN, "{series}", BOUT,
      setup=exposure_with(6, float("inf")), expect=("series.nxs", "exposure", "7")),
    C("B-series-exposure-short", "silent", BN, "{series}", BOUT, setup=set_exposure([2.0] * 5),
      expect=("series.nxs", "exposure")),
    C("B-expt-exposure-zero", "silent", BN, "edited.expt", BOUT,
      setup=expt_exposure([0.0] * 7), expect=("edited.expt", "exposure")),
    C("I-expt-exposure-negative", "silent", IM, "edited.expt", OUT,
      setup=expt_exposure([2.0, -2.0, 2.0, 2.0, 2.0, 2.0, 2.0]),
      expect=("edited.expt", "exposure", "2")),
    C("B-series-with-frames.image_range", "silent", BN, "{series}", BOUT,
      "frames.image_range=2,4", expect=("frames.image_range",)),
    C("B-series-with-frames.mask", "silent", BN, "{series}", BOUT, "frames.mask={dmask}",
      expect=("frames.mask",)),
    C("B-series-with-frames.shadow", "silent", BN, "{series}", BOUT,
      "frames.goniometer_shadow=True", expect=("frames.goniometer_shadow",)),
    C("B-series-given-twice", "silent", BN, "{series}", "input.image_series=other.nxs", BOUT,
      expect=("series.nxs", "other.nxs", "once")),
    C("B-series-with-frames.imageset", "silent", BN, "{series}", BOUT, "frames.imageset=0",
      expect=("frames.imageset",)),
    # ---- signals mid-write, then a re-run
    C("I-SIGINT-mid-write", "signal", IM, "{long}", OUT, fault=signal.SIGINT,
      expect=("interrupt",), outputs=IM_OUTPUTS),
    C("I-SIGTERM-mid-write", "signal", IM, "{long}", OUT, fault=signal.SIGTERM,
      expect=("SIGTERM",), outputs=IM_OUTPUTS),
    C("I-SIGKILL-mid-write", "signal", IM, "{long}", OUT, fault=signal.SIGKILL,
      outputs=IM_OUTPUTS),
    C("I-split-SIGTERM", "signal", IM, "{long}", OUT, "output.layout=split",
      fault=signal.SIGTERM, expect=("SIGTERM",),
      outputs=("out.nxs", "out.json", "out_parts", "dials.mdx_import.log")),
    C("I-split-SIGKILL", "signal", IM, "{long}", OUT, "output.layout=split",
      fault=signal.SIGKILL, outputs=("out.nxs", "out.json", "out_parts", "dials.mdx_import.log")),
    C("I-SIGTERM-json-log", "signal", IM, "{long}", OUT, "output.json=s.json",
      "output.log=run.log", fault=signal.SIGTERM, expect=("SIGTERM",),
      outputs=("out.nxs", "s.json", "run.log")),
    C("B-frames-SIGTERM", "signal", BN, "{long}", BOUT, fault=signal.SIGTERM,
      expect=("SIGTERM",), outputs=BIN_OUTPUTS),
    C("B-series-SIGINT", "signal", BN, "{longseries}", BOUT, fault=signal.SIGINT,
      expect=("interrupt",), outputs=BIN_OUTPUTS),
    C("B-series-SIGKILL", "signal", BN, "{longseries}", BOUT, fault=signal.SIGKILL,
      outputs=BIN_OUTPUTS),
    C("I-dask-SIGINT", "signal", IM, "{long}", OUT, "mp.method=dask", "mp.nproc=2",
      fault=signal.SIGINT, expect=("interrupt",), outputs=IM_OUTPUTS),
    C("I-dask-SIGTERM", "signal", IM, "{long}", OUT, "mp.method=dask", "mp.nproc=2",
      fault=signal.SIGTERM, expect=("SIGTERM",), outputs=IM_OUTPUTS),
    C("I-SIGHUP-mid-write", "signal", IM, "{long}", OUT, fault=signal.SIGHUP,
      expect=("SIGHUP",), outputs=IM_OUTPUTS),
    C("B-series-SIGHUP", "signal", BN, "{longseries}", BOUT, fault=signal.SIGHUP,
      expect=("SIGHUP",), outputs=BIN_OUTPUTS),
    C("I-dask-SIGKILL", "signal", IM, "{long}", OUT, "mp.method=dask", "mp.nproc=2",
      fault=signal.SIGKILL, outputs=IM_OUTPUTS),
    # ---- dask failures (loopback only)
    C("I-dask-scheduler-notaurl", "dask", IM, "{sweep}", OUT, "mp.method=dask",
      "mp.dask.scheduler=notaurl", expect=("notaurl",)),
    C("B-dask-scheduler-notaurl", "dask", BN, "{series}", BOUT, "mp.method=dask",
      "mp.dask.scheduler=notaurl", expect=("notaurl",)),
    C("I-dask-scheduler-unreachable", "dask", IM, "{sweep}", OUT, "mp.method=dask",
      "mp.dask.scheduler=tcp://127.0.0.1:1", "mp.dask.timeout=2",
      expect=("tcp://127.0.0.1:1",)),
    C("I-dask-no-workers", "dask", IM, "{sweep}", OUT, *DASK_IDLE, expect=("worker",)),
    C("B-dask-no-workers", "dask", BN, "{sweep}", BOUT, *DASK_IDLE, expect=("worker",)),
    C("B-dask-slurm-without-sbatch", "dask", BN, "{series}", BOUT, "mp.method=dask",
      "mp.dask.cluster=slurm", env=(("PATH", NO_SBATCH),), expect=("sbatch not found",)),
    # ---- output locations
    C("I-json-missing-dir", "location", IM, "{sweep}", OUT, "output.json=nowhere/s.json",
      expect=("nowhere",)),
    C("I-log-missing-dir", "location", IM, "{sweep}", OUT, "output.log=nowhere/x.log",
      expect=("nowhere",)),
    C("I-data-is-directory", "location", IM, "{sweep}", "output.data=adir",
      setup=mkdir("adir"), expect=("adir", "directory")),
    C("I-log-is-directory", "location", IM, "{sweep}", OUT, "output.log=adir",
      setup=mkdir("adir"), expect=("adir", "directory")),
    C("B-binned-is-symlink-loop", "location", BN, "{series}", "output.binned=loop.nxs",
      setup=symlink_loop("loop.nxs"), expect=("loop.nxs", "loop")),
    C("I-json-is-symlink-loop", "location", IM, "{sweep}", OUT, "output.json=loop.json",
      setup=symlink_loop("loop.json"), expect=("loop.json", "loop")),
    C("I-parent-is-file", "location", IM, "{sweep}", "output.data=afile/out.nxs",
      setup=write("afile", MARKER), expect=("afile",)),
    C("B-plot-is-directory", "location", BN, "{series}", BOUT, "output.plot=adir",
      setup=mkdir("adir"), expect=("adir", "directory")),
    C("B-binned-is-directory", "location", BN, "{series}", "output.binned=adir",
      setup=mkdir("adir"), expect=("adir", "directory")),
    C("B-json-missing-dir", "location", BN, "{series}", BOUT, "output.json=nowhere/s.json",
      expect=("nowhere",)),
    C("B-plot-missing-dir", "location", BN, "{series}", BOUT, "output.plot=nowhere/p.png",
      expect=("nowhere",)),
    C("I-readonly-cwd", "location", IM, "../{sweep}", cwd="{ro}", expect=("read-only",)),
    C("B-readonly-cwd", "location", BN, "../{series}", cwd="{ro}", expect=("read-only",)),
    C("I-json-in-readonly-dir", "location", IM, "{sweep}", OUT, "output.json={ro}/s.json",
      expect=("read-only",)),
    C("B-plot-in-readonly-dir", "location", BN, "{series}", BOUT, "output.plot={ro}/p.png",
      expect=("read-only",)),
    # ---- disk full (2 MiB tmpfs)
    C("I-disk-full-data", "disk", IM, "{big}", "output.data={full}/out.nxs",
      setup=fill_disk(1_000_000), expect=("full/out.nxs", "space")),
    C("I-disk-full-split", "disk", IM, "{big}", "output.data={full}/out.nxs",
      "output.layout=split", setup=fill_disk(1_000_000), expect=("full", "space")),
    C("I-disk-full-json", "disk", IM, "{sweep}", OUT, "output.json={full}/s.json",
      setup=fill_disk(0), expect=("s.json", "space")),
    C("I-disk-full-log", "disk", IM, "{sweep}", OUT, "output.log={full}/x.log",
      setup=fill_disk(0), expect=("x.log", "space")),
    C("B-disk-full-frames", "disk", BN, "{big}", "bins=1,2,2", "output.binned={full}/b.nxs",
      NOPLOT, setup=fill_disk(1_000_000), expect=("b.nxs", "space")),
    C("B-disk-full-series", "disk", BN, "{bigseries}", "bins=1,2,2",
      "output.binned={full}/b.nxs", NOPLOT, setup=fill_disk(1_000_000),
      expect=("b.nxs", "space")),
    C("I-disk-full-cwd", "disk", IM, "../{sweep}", cwd="{full}", setup=fill_disk(300_000),
      expect=("data.nxs", "space")),
    C("B-disk-full-cwd", "disk", BN, "{longseries}", "bins=4,2,2", cwd="{full}",
      setup=fill_disk(1_000_000), expect=("binned.nxs", "space")),
    C("B-disk-full-plot", "disk", BN, "{series}", BOUT, "output.plot={full}/p.png",
      setup=fill_disk(4096), expect=("p.png", "space")),
    # ---- corrupt and truncated files of every kind read
    C("I-expt-garbage", "corrupt", IM, "bad.expt", OUT, setup=write("bad.expt", "not json"),
      expect=("bad.expt",)),
    C("I-expt-truncated", "corrupt", IM, "sw/background.expt", OUT,
      setup=on_file("sweep", "sw/background.expt", truncate), expect=("background.expt",)),
    C("I-expt-empty-file", "corrupt", IM, "e.expt", OUT, setup=write("e.expt", ""),
      expect=("e.expt",)),
    C("B-expt-not-experiments", "corrupt", BN, "list.expt", BOUT, setup=write("list.expt", "[]"),
      expect=("list.expt",)),
    C("I-image-truncated", "corrupt", IM, "{sweep}", OUT, setup=in_sweep(truncate),
      expect=("bkg_00004.cbf",)),
    C("I-image-garbage", "corrupt", IM, "{sweep}", OUT, setup=in_sweep(garbage),
      expect=("bkg_00004.cbf",)),
    C("I-image-empty", "corrupt", IM, "{sweep}", OUT, setup=in_sweep(emptied),
      expect=("bkg_00004.cbf",)),
    C("I-image-is-directory", "corrupt", IM, "{sweep}", OUT, setup=in_sweep(made_directory),
      expect=("bkg_00004.cbf",)),
    C("I-image-missing-mid-sweep", "corrupt", IM, "{sweep}", OUT, setup=in_sweep(removed, 5),
      expect=("bkg_00005.cbf",)),
    C("I-images-all-missing", "corrupt", IM, "edited.expt", OUT,
      setup=expt_edit(expt_images_gone), expect=("/nonexistent/images",)),
    C("B-image-truncated", "corrupt", BN, "{sweep}", BOUT, setup=in_sweep(truncate, 6),
      expect=("bkg_00006.cbf",)),
    C("B-image-garbage", "corrupt", BN, "{sweep}", BOUT, setup=in_sweep(garbage, 2),
      expect=("bkg_00002.cbf",)),
    C("B-first-image-garbage-given", "corrupt", BN, "{images}", BOUT,
      setup=in_sweep(garbage, 1), expect=("bkg_00001.cbf",)),
    C("B-series-truncated", "corrupt", BN, "{series}", BOUT,
      setup=on_file("series", "series.nxs", truncate), expect=("series.nxs",)),
    C("B-series-garbage", "corrupt", BN, "{series}", BOUT,
      setup=on_file("series", "series.nxs", garbage), expect=("series.nxs",)),
    C("B-series-corrupt-chunk", "corrupt", BN, "{series}", BOUT,
      setup=series_edit(corrupt_chunk), expect=("series.nxs", "chunk")),
    C("B-mdx2-datastore-missing", "corrupt", BN, "{mdx2}", BOUT,
      setup=on_file("mdx2", "datastore", shutil.rmtree), expect=("mdx_0.nxs",)),
    C("B-mdx2-datastore-truncated", "corrupt", BN, "{mdx2}", BOUT,
      setup=on_file("mdx2", "datastore/mdx_1.nxs", truncate), expect=("mdx_1.nxs",)),
    C("B-mdx2-datastore-corrupt-chunk", "corrupt", BN, "{mdx2}", BOUT,
      setup=corrupt_datastore_chunk, expect=("mdx_0.nxs",)),
    C("B-split-part-missing", "corrupt", BN, "{split}", BOUT,
      setup=on_file("split", "split_parts/split_00001.nxs", removed),
      expect=("split_00001.nxs",)),
    C("B-split-part-truncated", "corrupt", BN, "{split}", BOUT,
      setup=on_file("split", "split_parts/split_00000.nxs", truncate),
      expect=("split_00000.nxs",)),
    C("B-mdx2-mask-garbage", "corrupt", BN, "{series}", BOUT, "input.mdx2_mask=mask.nxs",
      setup=write("mask.nxs", "not hdf5"), expect=("mask.nxs",)),
    C("B-mdx2-mask-truncated", "corrupt", BN, "{series}", BOUT, "input.mdx2_mask=mask.nxs",
      setup=mmask_edit(truncate), expect=("mask.nxs",)),
    C("B-mdx2-mask-wrong-shape", "corrupt", BN, "{series}", BOUT, "input.mdx2_mask=mask.nxs",
      setup=mmask_edit(mmask_wrong_shape), expect=("mask.nxs", "shape")),
    C("B-mdx2-mask-no-group", "corrupt", BN, "{series}", BOUT, "input.mdx2_mask=mask.nxs",
      setup=mmask_edit(mmask_no_group), expect=("mask.nxs",)),
    C("I-dials-mask-truncated", "corrupt", IM, "{sweep}", OUT, "mask=pixels.mask",
      setup=on_file("dmask", "pixels.mask", truncate), expect=("pixels.mask",)),
    C("I-dials-mask-not-a-mask", "corrupt", IM, "{sweep}", OUT, "mask=odd.mask",
      setup=pickle_of({"a": 1}), expect=("odd.mask",)),
    C("B-dials-mask-garbage", "corrupt", BN, "{sweep}", BOUT, "frames.mask=odd.mask",
      setup=write("odd.mask", "garbage"), expect=("odd.mask",)),
    # ---- other bad input
    C("I-frame-size-changes", "input", IM, "{sweep}", OUT, setup=other_size(4),
      expect=("bkg_00004.cbf", "size")),
    C("B-frame-size-changes", "input", BN, "{sweep}", BOUT, setup=other_size(3),
      expect=("bkg_00003.cbf", "size")),
    C("B-series-zero-frames", "input", BN, "{series}", BOUT, setup=series_edit(zero_frames),
      expect=("series.nxs", "0 frames")),
    C("B-series-axes-mismatch", "input", BN, "{series}", BOUT,
      setup=series_edit(lambda g: (g.__delitem__("phi"), g.create_dataset("phi", data=[1.0]))),
      expect=("series.nxs",)),
    C("I-refl-given", "input", IM, "strong.refl", OUT, setup=reflection_table,
      expect=("strong.refl",)),
    C("B-refl-given", "input", BN, "{series}", "strong.refl", BOUT, setup=reflection_table,
      expect=("strong.refl",)),
    C("I-zero-experiments", "input", IM, "empty.expt", OUT, setup=empty_experiment_list,
      expect=("empty.expt", "no experiments")),
    C("B-zero-experiments", "input", BN, "empty.expt", BOUT, setup=empty_experiment_list,
      expect=("empty.expt", "no experiments")),
    C("I-image-range-reversed", "input", IM, "{sweep}", OUT, "image_range=5,2",
      expect=("image_range=5,2", "reversed")),
    C("B-image-range-reversed", "input", BN, "{sweep}", BOUT, "frames.image_range=6,3",
      expect=("image_range=6,3", "reversed")),
    C("I-series-given-to-import", "input", IM, "{series}", OUT, expect=("series.nxs",)),
    C("B-binned-map-given", "input", BN, "old.nxs", BOUT, setup=binned_map,
      expect=("old.nxs",)),
    C("I-empty-directory-given", "input", IM, "nothing", OUT, setup=mkdir("nothing"),
      expect=("nothing",)),
]

# Cases known to fail (xfail, strict): none since the mechanisms of issue 11 are fixed.
XFAIL: set[str] = set()


def _params():
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names), "duplicate case names"
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason="issue 11")] if case.name in XFAIL else []
        yield pytest.param(case, id=f"{case.kind}-{case.name}", marks=marks)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def small_series(small_sweep, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("small_series")
    run([IMPORT, small_sweep, "output.data=series.nxs"], cwd=work)
    return work / "series.nxs"


@pytest.fixture(scope="session")
def small_split(small_sweep, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("small_split")
    run([IMPORT, small_sweep, "output.data=split.nxs", "output.layout=split", "chunks=3,0,0"],
        cwd=work)
    return work / "split.nxs"


@pytest.fixture(scope="session")
def small_mdx2(small_sweep, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("small_mdx2")
    run(["mdx2.import_data", small_sweep, "--outfile", "mdx.nxs", "--chunks", "3", "195", "487"],
        cwd=work)
    return work / "mdx.nxs"


@pytest.fixture(scope="session")
def small_eiger(tmp_path_factory) -> Path:
    from dials_mdxbg.testing.eiger import write_nxmx_sweep

    return write_nxmx_sweep(tmp_path_factory.mktemp("eiger") / "images", n_frames=4)


@pytest.fixture(scope="session")
def long_sweep(sweep, tmp_path_factory) -> Path:
    """A LONG_FRAMES-frame sweep: the 12 images of ``sweep`` linked over and over.

    Cheap to make (symlinks and one experiment list) and slow enough to import that a
    signal lands mid-write (about 2-3 s of writing).
    """
    images = tmp_path_factory.mktemp("long")
    for k in range(1, LONG_FRAMES + 1):
        (images / f"bkg_{k:05d}.cbf").symlink_to(sweep.parent / f"bkg_{(k - 1) % 12 + 1:05d}.cbf")
    expt = json.loads(sweep.read_text())
    scan = expt["scan"][0]
    scan["image_range"] = [1, LONG_FRAMES]
    scan["exposure_time"] = [scan["exposure_time"][0]] * LONG_FRAMES
    scan["epochs"] = [scan["epochs"][0] + i for i in range(LONG_FRAMES)]
    expt["imageset"][0]["template"] = str(images / "bkg_#####.cbf")
    (images / "long.expt").write_text(json.dumps(expt))
    return images / "long.expt"


@pytest.fixture(scope="session")
def long_series(long_sweep, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("long_series")
    run([IMPORT, long_sweep, "output.data=long.nxs", "chunks=4,0,0"], cwd=work)
    return work / "long.nxs"


@pytest.fixture(scope="session")
def idle_scheduler(tmp_path_factory):
    """A dask scheduler on loopback that no worker ever joins."""
    pytest.importorskip("distributed")
    where = tmp_path_factory.mktemp("scheduler")
    proc = subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", str(where / "s.json")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        for _ in range(300):
            if (where / "s.json").exists():
                break
            time.sleep(0.1)
        yield json.loads((where / "s.json").read_text())["address"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """What a case's run did (a CompletedProcess-like record)."""

    returncode: int
    stdout: str
    stderr: str
    pid: int = 0
    notes: list[str] = field(default_factory=list)


def signalled_run(cmd: list[str], cwd: Path, sig: int, command: str, logs: Path) -> Outcome:
    """Start ``cmd``, wait until it is writing, signal its process group, wait for it."""
    exe = shutil.which(cmd[0], path=str(BIN))
    out, err = logs / "stdout", logs / "stderr"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(
            [exe, *cmd[1:]], cwd=cwd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
            env=dict(os.environ, NO_COLOR="1"), start_new_session=True, text=True,
        )
        notes = []
        try:
            if not _wait_until_writing(proc, cwd, command):
                notes.append("finished before it could be signalled (sweep too short?)")
            else:
                os.killpg(proc.pid, sig)
            proc.wait(timeout=120)
        finally:
            try:  # whatever the command started (dask workers) goes too
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if proc.poll() is None:
                proc.wait()
    return Outcome(proc.returncode, out.read_text(), err.read_text(), proc.pid, notes)


def _wait_until_writing(proc, cwd: Path, command: str, timeout: float = 90) -> bool:
    """Poll until the run is mid-write: a hidden temporary of its data output has content
    (import), or its log says it is binning (binning writes its map at the very end)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if command == IMPORT:
            for p in cwd.glob(".out*"):
                if (p.is_file() and p.stat().st_size > 1_000_000) or (
                    p.is_dir() and sum(q.stat().st_size for q in p.rglob("*.nxs")) > 1_000_000
                ):
                    return True
        else:
            for p in cwd.glob("*mdx_bin_background.log*"):
                if b"Binning" in p.read_bytes():
                    time.sleep(0.3)  # well into the frames
                    return proc.poll() is None
        time.sleep(0.02)
    return False


def kill_problems(outcome: Outcome, before: dict, after: dict) -> list[str]:
    """After SIGKILL: only hidden leftovers, recognisable by the killed pid."""
    problems = []
    if outcome.returncode != -signal.SIGKILL:
        problems.append(f"exit status {outcome.returncode}, not killed")
    changes = [k for k in set(before) & set(after) if before[k] != after[k]]
    if changes or set(before) - set(after):
        problems.append("existing files changed or lost: " + ", ".join(sorted(changes)[:5]))
    for name in sorted(set(after) - set(before)):
        top = name.split("/")[0]
        if top != name:
            continue
        if not top.startswith(".") or str(outcome.pid) not in top:
            problems.append(f"leftover {top} not recognisable (hidden, with pid {outcome.pid})")
    return problems


def rerun_problems(case: Case, cmd: list[str], cwd: Path, left: dict) -> list[str]:
    """The re-run succeeds, cleans up stale leftovers and says so, leaves no temporaries."""
    proc = run(cmd, cwd=cwd, check=False, timeout=300)
    problems = []
    if proc.returncode != 0:
        return [f"re-run failed ({proc.returncode}): {proc.stderr.strip()[-300:]}"]
    after = snapshot(cwd)
    stray = [k for k in after if "/" not in k and k.startswith(".")]
    if stray:
        problems.append(f"re-run left hidden entries {stray}")
    unexpected = [k.split("/")[0] for k in set(after) - set(left)]
    unexpected = sorted(set(unexpected) - set(case.outputs))
    if unexpected:
        problems.append(f"re-run wrote unexpected {unexpected}")
    stale = [k for k in left if "/" not in k and k.startswith(".")]
    if stale:
        log = next((cwd / o for o in case.outputs if o.endswith(".log")), None)
        if log is None or "stale" not in log.read_text():
            problems.append(f"re-run log does not say it removed stale {stale}")
    return problems


def record(case: Case, outcome: str, problems: list[str]) -> None:
    path = os.environ.get("FAULTS_REPORT")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{case.name}\t{case.kind}\t{outcome}\t{' | '.join(problems)}\n")


@pytest.mark.parametrize("case", _params())
def test_fault(case: Case, request, tmp_path_factory):
    check_case(case, request, tmp_path_factory)


def check_case(case: Case, request, tmp_path_factory, **kw) -> None:
    """Run one case and assert the promise (the checker other fault suites reuse)."""
    problems = case_problems(case, request, tmp_path_factory, **kw)
    assert not problems, f"{case.command} {' '.join(case.args)}\n" + "\n".join(problems)


def case_problems(case: Case, request, tmp_path_factory, ctx_type=Ctx, **run_kw) -> list[str]:
    """Run one case; the problems found (empty: the promise held).

    ``ctx_type``: a :class:`Ctx` with more inputs; ``case.env`` (if the case has
    one): environment variables, ``{key}`` as in args; ``run_kw``: for ``run``
    (e.g. a ``preexec_fn`` setting a limit).
    """
    work = tmp_path_factory.mktemp("case")
    for name in PREVIOUS:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(MARKER)
    ctx = ctx_type(request, work)
    try:
        if case.setup:
            case.setup(ctx)
        args = [a.format_map(ctx) for a in case.args]
        images = ctx.made.get("images")
        args = [part for a in args for part in (a.split(" ") if a == images else [a])]
        env = {k: v.format_map(ctx) for k, v in getattr(case, "env", ())}
        cwd = (work / case.cwd.format_map(ctx)).resolve()
    except pytest.skip.Exception:
        record(case, "SKIP", [])
        raise
    cmd = [case.command, *args]
    before = snapshot(work)
    if case.fault is None:
        outcome = run(cmd, cwd=cwd, check=False, timeout=300, env=env, **run_kw)
        notes: list[str] = []
    else:
        logs = tmp_path_factory.mktemp("logs")
        outcome = signalled_run(cmd, cwd, case.fault, case.command, logs)
        notes = outcome.notes
    after = snapshot(work)
    if case.fault == signal.SIGKILL:
        problems = notes + kill_problems(outcome, before, after)
    else:
        problems = notes + message_problems(case.command, outcome, case.expect)
        if "Traceback" in outcome.stderr:  # what the traceback ends with says what went wrong
            problems.append("stderr ends: " + outcome.stderr.strip().splitlines()[-1][:200])
        problems += tree_changes(before, after)
    if case.fault is not None and not notes:
        problems += rerun_problems(case, cmd, cwd, after)
    record(case, "FAIL" if problems else "PASS", problems)
    return problems


def test_every_kind_is_covered():
    """The table covers every class of the issue, with at least 60 distinct cases."""
    kinds = {c.kind for c in CASES}
    assert kinds == set(KINDS), set(KINDS) ^ kinds
    assert len(CASES) >= 60
