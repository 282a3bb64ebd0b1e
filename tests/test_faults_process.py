"""Faults of the process rather than the data: signals at start-up and during dask start-up,
a closed stdout, a file-size limit, a commit that fails half-way, stale temporaries of
zombies and other hosts, DIALS' option spellings, and the log of an unexpected failure.

Each case asserts the exit status, one line on stderr without a traceback, and the files
left on disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, run
from dials_mdxbg.util.atomic import host_tag

IMPORT = "dials.mdx_import"
BINNING = "dials.mdx_bin_background"
TRACEBACK = re.compile(r"Traceback|Logging error|File \"")


def one_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    assert not TRACEBACK.search(proc.stderr), proc.stderr[-2000:]
    return lines[0]


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def series(small_sweep, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("process_series")
    run([IMPORT, small_sweep, "output.data=s.nxs"], cwd=work)
    return work / "s.nxs"


def popen(cmd: list, cwd: Path, **kw) -> subprocess.Popen:
    exe = shutil.which(cmd[0], path=str(BIN))
    return subprocess.Popen(
        [exe, *map(str, cmd[1:])], cwd=cwd, stdin=subprocess.DEVNULL, text=True,
        env=dict(os.environ, NO_COLOR="1"), start_new_session=True, **kw,
    )  # fmt: skip


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("delay", [0.15, 0.3, 0.5, 0.8])
def test_sigint_during_start_up(series, tmp_path, delay):
    """Ctrl-C while Python imports DIALS: one line and 130, never a traceback."""
    proc = popen([BINNING, series, "output.binned=b.nxs"], tmp_path,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if proc.returncode == 0:
        pytest.skip("finished before the signal")
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "interrupted by SIGINT" in one_line(result)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.6, 1.0])
def test_sigterm_during_dask_start_up(small_sweep, tmp_path, delay):
    """A signal while the local cluster starts is never swallowed (the run must not exit 0)."""
    proc = popen([IMPORT, small_sweep, "output.data=out.nxs", "mp.method=dask", "mp.nproc=2",
                  "output.log=run.log"], tmp_path,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        logs = list(tmp_path.glob(".run.log.part-*"))
        if logs and b"Starting a local dask cluster" in logs[0].read_bytes():
            break
        time.sleep(0.01)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "SIGTERM" in one_line(subprocess.CompletedProcess(proc.args, 1, out, err))
    assert list(tmp_path.iterdir()) == []


def test_sighup_leaves_nothing(series, tmp_path):
    """A closed terminal (SIGHUP) is an interruption like Ctrl-C: temporaries removed."""
    proc = popen([BINNING, series, "output.binned=b.nxs", "output.log=run.log"], tmp_path,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".run.log.part-*")):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGHUP)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("finished before the signal")
    assert proc.returncode == 128 + signal.SIGHUP, err
    assert "SIGHUP" in one_line(subprocess.CompletedProcess(proc.args, 1, out, err))
    assert list(tmp_path.iterdir()) == []


def test_closed_stdout_is_not_an_error(series, tmp_path):
    """``... | head -1``: the run goes on quietly and writes its outputs."""
    proc = popen([BINNING, series, "output.binned=b.nxs"], tmp_path,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 0, err
    assert not TRACEBACK.search(err), err
    assert (tmp_path / "b.nxs").is_file() and hidden(tmp_path) == []


def test_file_size_limit_is_one_line(small_sweep, tmp_path):
    """``ulimit -f``: the same one-line refusal as a full disk, no crash, nothing left."""

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (300 * 1024, 300 * 1024))

    exe = shutil.which(IMPORT, path=str(BIN))
    proc = subprocess.run(
        [exe, str(small_sweep), "output.data=out.nxs", "output.log=None"], cwd=tmp_path,
        capture_output=True, text=True, preexec_fn=limit, stdin=subprocess.DEVNULL,
        env=dict(os.environ, NO_COLOR="1"), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "file-size limit" in one_line(proc)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- commit and leftovers


def test_failed_commit_puts_everything_back(series, tmp_path_factory):
    """As nobody in a sticky folder where b.html is root's: all outputs or none."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as nobody")
    shared = Path("/tmp") / f"mdxbg-sticky-{os.getpid()}"
    shared.mkdir(mode=0o1777)
    try:
        shared.chmod(0o1777)
        shutil.copy(series, shared / "s.nxs")
        (shared / "s.nxs").chmod(0o644)
        (shared / "b.html").write_text("root's report\n")  # nobody may not replace it
        (shared / "b.nxs").write_text("nobody's old map\n")
        os.chown(shared / "b.nxs", 65534, 65534)
        before = {p.name: p.read_bytes() for p in shared.iterdir()}
        exe = shutil.which(BINNING, path=str(BIN))
        proc = subprocess.run(
            [exe, "s.nxs", "output.binned=b.nxs", "output.plot=b.png", "output.log=b.log"],
            cwd=shared, capture_output=True, text=True, user=65534, group=65534,
            env=dict(os.environ, NO_COLOR="1", HOME=str(shared), MPLCONFIGDIR=str(shared)),
            stdin=subprocess.DEVNULL, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "b.html" in one_line(proc)
        after = {p.name: p.read_bytes() for p in shared.iterdir() if not p.is_dir()}
        assert after == before
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_stale_temporaries_of_zombies_go_others_stay(series, tmp_path):
    """A killed run's zombie is dead; another host's temporary and a user's look-alike stay."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while time.time() < deadline:
        state = Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        if state == "Z":
            break
        time.sleep(0.01)
    try:
        ours = tmp_path / f".b.nxs.part-{host_tag()}-{zombie.pid}"
        other_host = tmp_path / f".b.nxs.part-elsewhere-{zombie.pid}"
        users = tmp_path / ".b.nxs.old-20241201"
        for p in (ours, other_host, users):
            p.write_text("x")
        run([BINNING, series, "output.binned=b.nxs", "output.log=run.log"], cwd=tmp_path)
        assert not ours.exists()
        assert other_host.exists() and users.exists()
        assert "stale" in (tmp_path / "run.log").read_text()
    finally:
        zombie.wait()


# --------------------------------------------------------------------------- DIALS conventions


@pytest.mark.parametrize("command", [IMPORT, BINNING])
def test_nproc_auto(command, small_sweep, tmp_path):
    """``mp.nproc=Auto``, DIALS' spelling for all cores, runs on the cores there are."""
    run([command, small_sweep, "mp.nproc=Auto", "output.json=s.json"], cwd=tmp_path)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["program"] == command


@pytest.mark.parametrize("option", [["-c", "-a", "1"], ["-c", "-e", "2"], ["-c", "-a1"]])
def test_show_config_with_a_level(option, tmp_path):
    proc = run([BINNING, *option], cwd=tmp_path)
    assert "output" in proc.stdout and list(tmp_path.iterdir()) == []


def test_unexpected_failure_keeps_its_log(series, tmp_path, monkeypatch, capsys):
    """A bug (not bad input) keeps the run's log, names it, and writes nothing else."""
    from dials_mdxbg.command_line import mdx_bin_background
    from dials_mdxbg.jobs import bin_background

    def broken(*args, **kw):
        raise RuntimeError("a bug for the test")

    monkeypatch.setattr(bin_background, "bin_background", broken)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIALS_MDXBG_TRACEBACK", raising=False)
    dials_log = logging.getLogger("dials")
    handlers = dials_log.handlers[:]
    try:
        with pytest.raises(SystemExit) as exit_info:
            mdx_bin_background.run([str(series), "output.binned=b.nxs", "output.log=run.log"])
    finally:  # the run configured DIALS logging in this process: leave it as it was
        for handler in dials_log.handlers[:]:
            if handler not in handlers:
                dials_log.removeHandler(handler)
                handler.close()
    assert exit_info.value.code == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unexpected failure (a bug for the test)" in line and "run.log" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.log"]
    log = (tmp_path / "run.log").read_text()
    assert "Traceback" in log and "a bug for the test" in log


def test_scheduler_port_that_never_answers(small_sweep, tmp_path):
    """A loopback port that accepts and stays silent: refused within mp.dask.timeout."""
    pytest.importorskip("distributed")
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        t0 = time.time()
        proc = run([IMPORT, small_sweep, "output.data=out.nxs", "mp.method=dask",
                    f"mp.dask.scheduler={address}", "mp.dask.timeout=3"], cwd=tmp_path,
                   check=False, timeout=120)  # fmt: skip
        assert time.time() - t0 < 60
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert proc.returncode == 1
    assert "did not answer" in one_line(proc)
    assert list(tmp_path.iterdir()) == []
