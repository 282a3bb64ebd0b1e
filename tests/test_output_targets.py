"""Outputs that are devices, FIFOs or links: written into or through, never renamed over.

Every device here is made with ``mknod`` in the test's own folder (never the machine's
``/dev``): as root, renaming a temporary over a node would replace it with a regular file.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from conftest import run
from dials_mdxbg.util import atomic
from dials_mdxbg.util.targets import output_target

BINNING = "dials.mdx_bin_background"


def mknod(path: Path, major: int, minor: int) -> Path:
    """A character device node like /dev/null (1, 3) or /dev/full (1, 7), in a scratch folder."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("mknod needs root (CAP_MKNOD)")
    return path


def is_char_device(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


@pytest.fixture(scope="module")
def series(small_sweep, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("targets_series")
    run(["dials.mdx_import", small_sweep, "output.data=s.nxs"], cwd=work)
    return work / "s.nxs"


def bin_args(series: Path, *extra: str) -> list[str]:
    return [BINNING, series, "bins=2,10,10", "output.binned=b.nxs", "output.plot=None",
            "output.html=None", *extra]


# --------------------------------------------------------------------------- in-process


def test_classification(tmp_path):
    null = mknod(tmp_path / "null", 1, 3)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "real.txt").write_text("x")
    (tmp_path / "link.txt").symlink_to("real.txt")
    (tmp_path / "dangling.txt").symlink_to("sub/new.txt")
    (tmp_path / "sub").mkdir()
    (tmp_path / "out").symlink_to("/proc/self/fd/1")
    (tmp_path / "loop").symlink_to("loop")

    assert output_target(null).stream and output_target(fifo).stream
    assert not output_target(tmp_path / "new.nxs").stream
    assert output_target(tmp_path / "link.txt").path == tmp_path / "real.txt"
    assert output_target(tmp_path / "dangling.txt").path == tmp_path / "sub" / "new.txt"
    out = output_target(tmp_path / "out")
    assert out.stream and out.fd == 1
    with pytest.raises(OSError):
        output_target(tmp_path / "loop")
    assert "loop" in atomic.location_problem(tmp_path / "loop")
    assert atomic.location_problem(null) is None
    assert "not a folder" in atomic.location_problem(null, "dir")


def test_write_text_into_a_device_keeps_the_node(tmp_path):
    null = mknod(tmp_path / "null", 1, 3)
    full = mknod(tmp_path / "full", 1, 7)
    atomic.write_text(null, "hello\n")
    assert is_char_device(null)
    with pytest.raises(atomic.OutputError, match="no space left on the device"):
        atomic.write_text(full, "hello\n")
    assert is_char_device(full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "null"]


def test_write_through_a_symlink_keeps_the_link(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "real.txt").write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to("d/real.txt")
    with atomic.committed_together():
        atomic.write_text(link, "new")
        assert (tmp_path / "d" / "real.txt").read_text() == "old"  # not before the commit
    assert link.is_symlink() and (tmp_path / "d" / "real.txt").read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["real.txt"]


def test_a_failing_stream_fails_before_any_file_is_renamed(tmp_path):
    full = mknod(tmp_path / "full", 1, 7)
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(atomic.OutputError), atomic.committed_together():
        atomic.write_text(tmp_path / "a.txt", "new")
        atomic.write_text(full, "summary")
    assert (tmp_path / "a.txt").read_text() == "old" and is_char_device(full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "full"]


# --------------------------------------------------------------------------- the commands


def test_log_and_json_into_null_device(series, tmp_path):
    null = mknod(tmp_path / "null", 1, 3)
    run(bin_args(series, f"output.log={null}", f"output.json={null}"), cwd=tmp_path)
    assert is_char_device(null)
    assert (tmp_path / "b.nxs").is_file()


def test_json_into_full_device_is_one_line_and_nothing_changes(series, tmp_path):
    full = mknod(tmp_path / "full", 1, 7)
    proc = run(bin_args(series, f"output.json={full}"), cwd=tmp_path, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left on the device" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert is_char_device(full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no map, no log


def test_json_through_a_link_to_stdout(series, tmp_path):
    out = tmp_path / "stdout"
    out.symlink_to("/proc/self/fd/1")
    proc = run(bin_args(series, f"output.json={out}", "output.log=None"), cwd=tmp_path)
    assert out.is_symlink() and os.readlink(out) == "/proc/self/fd/1"
    start = proc.stdout.index("\n{\n  \"") + 1
    summary = json.loads(proc.stdout[start:])  # committed at the end: the end of stdout
    assert summary["program"] == BINNING
    assert proc.stdout[:start].strip().splitlines()[-1].startswith("done in")


def test_json_into_a_fifo_with_a_reader(series, tmp_path):
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    run(bin_args(series, f"output.json={fifo}"), cwd=tmp_path)
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert json.loads(received[0])["program"] == BINNING


def test_json_into_a_fifo_nobody_reads(series, tmp_path):
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    proc = run(bin_args(series, f"output.json={fifo}"), cwd=tmp_path, check=False, timeout=120)
    assert proc.returncode == 1 and "no process is reading it" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.fifo"]


def test_map_through_a_symlink(series, tmp_path):
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "real.nxs").write_text("old")
    (tmp_path / "b.nxs").symlink_to("maps/real.nxs")
    run(bin_args(series), cwd=tmp_path)
    assert (tmp_path / "b.nxs").is_symlink()
    assert (tmp_path / "maps" / "real.nxs").read_bytes()[:4] == b"\x89HDF"
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["real.nxs"]


def test_a_rename_failing_at_commit_puts_everything_back(tmp_path, monkeypatch):
    """All outputs or none: a rename that fails half-way undoes those already made."""
    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "c.txt").write_text("old c")
    real_replace = os.replace

    def replace(src, dst, *args, **kw):
        if Path(dst).name == "c.txt":
            raise PermissionError(1, "Operation not permitted", str(dst))
        return real_replace(src, dst, *args, **kw)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(atomic.OutputError, match="c.txt"), atomic.committed_together():
        for name in ("a.txt", "b.txt", "c.txt"):
            atomic.write_text(tmp_path / name, "new")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "c.txt"]
    assert (tmp_path / "a.txt").read_text() == "old a"
    assert (tmp_path / "c.txt").read_text() == "old c"
