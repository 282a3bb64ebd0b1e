"""Fault injection, issue 19 section 6: failures that must say what they are, in one line.

Each case once ended in the catch-all "unexpected failure ... please report it", or in a
line that blamed the wrong thing (the experiment list for memory running out, the working
directory for a full TMPDIR, "no such file" for a symlink loop). The cases run through the
checks of :mod:`test_faults` (exit status, one readable stderr line naming what ``expect``
lists, every file on disk byte-identical); a case may also set environment variables
(``env``, formatted with the case context like ``args``).

Memory running out (``ulimit -v``) is a ladder of address-space limits below the peak of a
successful run, since where the allocation fails depends on the machine; each run of the ladder
has a deadline, and one still running then has hung (OpenBLAS retrying its work buffer forever
did, in both commands, until issue 19 was closed).
"""

from __future__ import annotations

import os
import pickle
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import BIN, run
from dials_mdxbg.util.memory import MESSAGE as OUT_OF_MEMORY
from test_faults import (  # noqa: F401  (small_series: a fixture the cases use)
    BN,
    BOUT,
    IM,
    MARKER,
    OUT,
    PREVIOUS,
    Case,
    Ctx,
    case_problems,
    check_case,
    fill_disk,
    small_series,
    symlink,
    symlink_loop,
)

LONG = "a" * 248 + ".nxs"  # 252 characters: its temporary's name would pass NAME_MAX
OOM = ("out of memory", "ulimit -v")


class MsgCtx(Ctx):
    """The fault suite's context, plus ``few``: a tmpfs with 16 inodes."""

    def make_few(self) -> str:
        opts = "size=4m,nr_inodes=16"
        return str(self._mount("few", ["-t", "tmpfs", "-o", opts, "tmpfs"]))


def M(name, kind, command, *args, **kw) -> Case:
    return Case(name, kind, command, tuple(args), **kw)


def copy_of(name: str, key: str = "sweep") -> Callable:
    def setup(ctx: Ctx) -> None:
        shutil.copy(ctx.work / ctx[key], ctx.work / name)

    return setup


def panel_mask(name: str, panels: int, shape: tuple[int, int]) -> Callable:
    """A dials.generate_mask-style mask of ``panels`` panels of ``shape`` (ny, nx)."""

    def setup(ctx: Ctx) -> None:
        from dials.array_family import flex

        mask = tuple(flex.bool(np.ones(shape, bool)) for _ in range(panels))
        (ctx.work / name).write_bytes(pickle.dumps(mask))

    return setup


def dangling(name: str) -> Callable:
    def setup(ctx: Ctx) -> None:
        (ctx.work / name).symlink_to("gone.expt")

    return setup


def fill_inodes(leave: int) -> Callable:
    """Use every inode of ./few (16) but ``leave``."""

    def setup(ctx: Ctx) -> None:
        few = Path(ctx["few"])
        i = 0
        while os.statvfs(few).f_favail > leave:
            (few / f"f{i}").write_bytes(MARKER)
            i += 1

    return setup


CASES = [
    # 1. the same experiments twice
    M("I-expt-given-twice", "input", IM, "{sweep}", "{sweep}", OUT,
      expect=("background.expt", "twice")),
    M("B-expt-and-its-link", "input", BN, "{sweep}", "l.expt", BOUT,
      setup=symlink("l.expt", "sweep"), expect=("l.expt", "background.expt", "same file")),
    M("I-expt-and-its-copy", "input", IM, "{sweep}", "copy.expt", OUT,
      setup=copy_of("copy.expt"), expect=("background.expt", "copy.expt", "same experiment")),
    M("B-expt-given-twice-as-param", "input", BN, "{sweep}", "input.experiments={sweep}", BOUT,
      expect=("background.expt", "twice")),
    # 2. a DIALS mask made for another detector
    M("I-dials-mask-other-size", "input", IM, "{big}", "mask={dmask}", OUT,
      expect=("mask=pixels.mask", "another detector", "1475 x 407")),
    M("B-dials-mask-other-size", "input", BN, "{big}", "frames.mask={dmask}", BOUT,
      expect=("frames.mask=pixels.mask", "another detector")),
    M("I-dials-mask-six-panels", "input", IM, "{sweep}", "mask=six.mask", OUT,
      setup=panel_mask("six.mask", 6, (195, 487)), expect=("mask=six.mask", "6 panels")),
    M("B-dials-mask-two-panels", "input", BN, "{sweep}", "frames.mask=two.mask", BOUT,
      setup=panel_mask("two.mask", 2, (195, 487)), expect=("frames.mask=two.mask", "2 panels")),
    # 3. output paths: through a missing folder, names too long
    M("B-binned-through-missing-dir", "location", BN, "{series}", "output.binned=nosuch/../b.nxs",
      expect=("output.binned", "nosuch", "does not exist")),
    M("I-data-through-missing-dir", "location", IM, "{sweep}", "output.data=nosuch/../out.nxs",
      expect=("output.data", "nosuch", "does not exist")),
    M("B-json-through-missing-dir", "location", BN, "{series}", BOUT,
      "output.json=gone/../s.json", expect=("output.json", "gone", "does not exist")),
    M("I-data-name-too-long", "location", IM, "{sweep}", "output.data=" + "a" * 256 + ".nxs",
      expect=("output.data", "255")),
    M("I-long-name-split-parts", "location", IM, "{sweep}", f"output.data={LONG}",
      "output.layout=split", expect=("output.data", "part files", "255")),
    # 4. out of inodes, a full TMPDIR
    M("I-no-inodes", "disk", IM, "{sweep}", "output.data={few}/out.nxs",
      setup=fill_inodes(0), expect=("few", "inodes")),
    M("B-last-inode-then-log", "disk", BN, "{series}", "output.binned={few}/b.nxs",
      "output.log={few}/x.log", setup=fill_inodes(1), expect=("few", "inodes")),
    M("B-cwd-one-inode", "disk", BN, "../{series}", cwd="{few}", setup=fill_inodes(1),
      expect=("few", "inodes")),
    M("B-tmpdir-full-json-stream", "disk", BN, "{series}", BOUT, "output.json=/dev/stdout",
      setup=fill_disk(4096), env=(("TMPDIR", "{full}"),),
      expect=("temporary directory", "full", "TMPDIR")),
    M("I-tmpdir-full-log-stream", "disk", IM, "{sweep}", OUT, "output.log=/dev/stdout",
      "output.json=/dev/stderr", setup=fill_disk(4096), env=(("TMPDIR", "{full}"),),
      expect=("temporary directory", "TMPDIR")),
    # 6. input links
    M("I-expt-symlink-loop", "input", IM, "loop.expt", OUT, setup=symlink_loop("loop.expt"),
      expect=("loop.expt", "loop of symbolic links")),
    M("B-expt-symlink-loop", "input", BN, "loop.expt", BOUT, setup=symlink_loop("loop.expt"),
      expect=("loop.expt", "loop of symbolic links")),
    M("I-expt-dangling-link", "input", IM, "d.expt", OUT, setup=dangling("d.expt"),
      expect=("d.expt", "gone.expt", "symbolic link")),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}-{c.name}" for c in CASES])
def test_message(case: Case, request, tmp_path_factory):
    check_case(case, request, tmp_path_factory, ctx_type=MsgCtx)


def test_cases_are_distinct():
    import test_faults

    names = [c.name for c in CASES] + [c.name for c in test_faults.CASES]
    assert len(set(names)) == len(names)


# --------------------------------------------------------------------------- long names


def test_long_output_names_work(small_sweep, tmp_path):
    """A 252-character output name: its temporaries are shortened, and stale ones removed."""
    from dials_mdxbg.util.tempnames import host_tag, short_name

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".{short_name(LONG)}.part-{host_tag()}-{dead.pid}"
    stale.write_bytes(b"left by a killed run")
    run([IM, small_sweep, f"output.data={LONG}"], cwd=tmp_path)
    run([BN, LONG, f"output.binned=b{LONG[1:]}"], cwd=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.startswith(".")], names
    assert LONG in names and f"b{LONG[1:]}" in names
    assert "stale" in (tmp_path / "dials.mdx_import.log").read_text()


# --------------------------------------------------------------------------- memory


def _peak_vm(cmd: list[str], cwd: Path) -> int:
    """Peak address space (bytes) of a successful run of ``cmd`` (VmPeak at exit)."""
    exe = shutil.which(cmd[0], path=str(BIN))
    code = (
        "import atexit, runpy, sys\n"
        "def peak():\n"
        "    line = [x for x in open('/proc/self/status') if x.startswith('VmPeak')][0]\n"
        "    sys.stderr.write('VMPEAK %s\\n' % line.split()[1])\n"
        "atexit.register(peak)\n"
        f"sys.argv = {[exe, *map(str, cmd[1:])]!r}\n"
        f"runpy.run_path({exe!r}, run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    found = re.search(r"VMPEAK (\d+)", proc.stderr)
    if proc.returncode != 0 or not found:
        pytest.skip(f"cannot measure the peak memory: {proc.stderr[-300:]}")
    return int(found[1]) * 1024


#: Limits below the peak (MB) each run of the memory ladder gets: close to the peak the
#: allocation fails late in the run, far below it while DIALS and numpy are imported.
LADDER = (4, 8, 16, 32, 48, 64, 96, 128, 160, 192, 224, 256, 288, 320)
HANG_AFTER = 30
"""Seconds a run under a limit may take: one still running then has hung (each takes 1-6 s)."""


@pytest.mark.parametrize(
    "command, source", [(IM, "big"), (BN, "bigseries"), (BN, "big")],
    ids=["import", "binning-series", "binning-one-step"],
)
def test_out_of_memory_is_one_line(command, source, request, tmp_path_factory):
    """Under ``ulimit -v`` below a run's peak, every failure says memory ran out, and soon.

    Whether the allocation fails while importing DIALS, parsing the experiment list
    (DIALS' parser then blamed the file), reading frames, writing HDF5 or drawing the
    preview depends on the limit: a ladder of limits down to 320 MB below the peak meets
    them all. A run that has not ended after ``HANG_AFTER`` seconds is killed (SIGALRM)
    and fails the test. HDF5 itself may crash when its own allocation fails (no Python
    code runs then): such runs are noted, not judged.
    """
    out = OUT if command == IM else BOUT
    probe = tmp_path_factory.mktemp("peak")
    inputs = {"big": "sweep", "bigseries": "our_import"}
    peak = _peak_vm([command, request.getfixturevalue(inputs[source]), out], probe)
    failed, crashed, hung, problems = 0, 0, [], []
    for mb in LADDER:
        limit = peak - mb * 2**20
        case = M(f"{command}-limit-{limit >> 20}M", "memory", command, f"{{{source}}}", out,
                 expect=OOM)  # fmt: skip

        def cap(limit=limit) -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            signal.alarm(HANG_AFTER)  # kept across exec: the run is killed if it hangs

        found = case_problems(case, request, tmp_path_factory, ctx_type=MsgCtx, preexec_fn=cap)
        if any("exit status 0" in p for p in found):
            continue
        if any("SIGALRM" in p for p in found):
            hung.append(f"{limit >> 20} MB")
            continue
        if any("crashed" in p for p in found):
            crashed += 1
            continue
        failed += 1
        problems += [f"{limit >> 20} MB: {p}" for p in found]
    assert not hung, f"still running after {HANG_AFTER} s under ulimit -v: {hung}"
    if not failed:
        pytest.skip(f"no limit below the peak ({peak >> 20} MB) made the run fail cleanly")
    assert not problems, f"{crashed} crashed inside HDF5\n" + "\n".join(problems)


STUCK_THREAD = """
import threading
from dials_mdxbg.util.exits import handle_errors

with handle_errors("dials.mdx_import"):
    threading.Thread(target=threading.Event().wait).start()  # never ends, not a daemon
    raise MemoryError()
"""


def test_out_of_memory_does_not_wait_for_threads():
    """When memory ran out, the process ends after the one line, whatever its threads do
    (Python would join a stuck thread at exit, OpenBLAS its own: issue 19's hang)."""
    done = subprocess.run(
        [sys.executable, "-c", STUCK_THREAD], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [f"dials.mdx_import: error: {OUT_OF_MEMORY}"]


HELD = """
import os, resource, sys
from dials_mdxbg.util import stderr_hold

limit = 8 * 2**30  # far above what this needs: only that there is a limit matters
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
stderr_hold.hold_stderr("dials.mdx_import")
os.write(2, sys.argv[1].encode().decode("unicode_escape").encode())
if sys.argv[2] == "exit":
    os._exit(127)  # as the dynamic loader does, or a crash: no Python code runs
stderr_hold.release_stderr(show=sys.argv[2] == "show")
sys.stderr.write("after\\n")
"""


@pytest.mark.parametrize(
    "text, end, shown",
    [
        ("numpy: a traceback\\n", "show", "numpy: a traceback\nafter\n"),
        ("numpy: a traceback\\n", "drop", "after\n"),
        ("Fatal Python error: Segmentation fault\\n", "exit",
         "Fatal Python error: Segmentation fault\n"),
        ("libx.so: out of memory\\n", "exit", f"dials.mdx_import: error: {OUT_OF_MEMORY}\n"),
    ],
    ids=["shown", "dropped", "crash", "loader"],
)
def test_held_stderr(text, end, shown):
    """Under a limit, stderr of the start-up is held: shown or dropped when the command
    decides, and never lost when the process ends on its own (then written by a watcher
    process, as the one line if the dynamic loader ran out of memory)."""
    done = subprocess.run(
        [sys.executable, "-c", HELD, text, end], capture_output=True, text=True, timeout=60
    )
    assert done.stderr == shown


BLAS_ROOM = """
import resource, sys
import numpy as np
from dials_mdxbg.util.memory import room_for_blas

size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
limit = size + int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    room_for_blas()
except MemoryError:
    sys.exit("refused")
print(np.linalg.inv(np.diag([2.0, 4.0])).trace())
"""


@pytest.mark.parametrize("room, said", [(32, "refused"), (400, "0.75")])
def test_room_for_blas(room, said):
    """OpenBLAS retries a work buffer it cannot map forever: with too little address space
    left, :func:`room_for_blas` refuses at once; with enough, it maps the buffer and later
    LAPACK calls (matplotlib's) work under the limit."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BLAS_ROOM), str(room)],
        capture_output=True, text=True, timeout=60,
    )
    assert said in done.stdout + done.stderr, done.stderr


FINALISER = """
import sys
from dials_mdxbg.util.exits import handle_errors

class Finaliser:
    def __del__(self):
        raise {error}

before = sys.unraisablehook
with handle_errors("dials.mdx_import"):
    obj = Finaliser()
    del obj
assert sys.unraisablehook is before
"""


@pytest.mark.parametrize("error, shown", [("MemoryError()", False), ("ValueError('a bug')", True)])
def test_finaliser_failing_for_memory_is_not_printed(error, shown):
    """Memory running out makes finalisers fail too: Python's "Exception ignored in: ..."
    once came before (or inside) the one error line (CI, ``ulimit -v`` at 397 MB). Inside a
    command such a failed allocation is dropped; other finaliser errors are shown as Python
    shows them, and the hook is Python's again once the command is done."""
    code = FINALISER.format(error=error)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert ("Exception ignored" in done.stderr) is shown, done.stderr


LEFT_BEHIND = """
import sys
from pathlib import Path
from dials_mdxbg.util import atomic
from dials_mdxbg.util.exits import handle_errors

out = Path(sys.argv[1])
remove, failed = atomic._remove, []


def remove_once_failing(path):  # the unwinding's removal runs out of memory too
    if not failed:
        failed.append(path)
        raise MemoryError()
    remove(path)


with handle_errors("dials.mdx_import"):
    with atomic.atomic_path(out) as tmp:
        tmp.write_bytes(b"half a file")
        atomic._remove = remove_once_failing
        raise MemoryError()
"""


def test_temporaries_the_unwinding_could_not_remove_are_removed_at_the_error(tmp_path):
    """Memory running out can make the removal of a failed run's temporary fail too (CI,
    ``ulimit -v`` at 404 MB left ``.out.nxs.part-<host>-<pid>``): the one-line error then
    removes what is left of this process's temporaries, and only those."""
    (tmp_path / "out.nxs").write_text("output of an earlier run")
    done = subprocess.run(
        [sys.executable, "-c", LEFT_BEHIND, str(tmp_path / "out.nxs")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "out of memory" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nxs"]
    assert (tmp_path / "out.nxs").read_text() == "output of an earlier run"
