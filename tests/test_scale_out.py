"""dask.distributed execution and experiment lists with several sweeps."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import BIN, bin_map, read_binned, read_series, run
from dials_mdxbg.testing.pilatus import SweepSpec, write_sweep

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker LocalCluster on loopback, as a user's running scheduler."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its HTTP endpoint off 8787
    ) as local:
        yield local


def test_dask_import_equals_single_process(sweep, our_import, cluster, tmp_path):
    address = f"mp.dask.scheduler={cluster.scheduler_address}"
    run(
        [
            "dials.mdx_import",
            sweep,
            "output.data=d.nxs",
            "chunks=5,211,493",
            "mp.method=dask",
            address,
            "mp.dask.frames_per_task=5",
            "output.json=d.json",
        ],
        cwd=tmp_path,
    )
    ours = read_series(our_import)
    dask = read_series(tmp_path / "d.nxs")
    for key in ours:
        assert np.array_equal(dask[key], ours[key]), key
    summary = json.loads((tmp_path / "d.json").read_text())["runs"][0]
    assert summary["engine"]["engine"] == "dask" and summary["engine"]["tasks"] == 3
    # Nothing but the output is left: the parts were copied in and removed.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json", "d.nxs", "dials.mdx_import.log"]


def test_dask_split_layout_is_movable(sweep, our_import, cluster, tmp_path, monkeypatch):
    from mdx2.io import loadobj

    address = f"mp.dask.scheduler={cluster.scheduler_address}"
    run(
        [
            "dials.mdx_import",
            sweep,
            "output.data=s.nxs",
            "chunks=5,211,493",
            "output.layout=split",
            "mp.method=dask",
            address,
        ],
        cwd=tmp_path,
    )
    moved = tmp_path / "moved"
    moved.mkdir()
    (tmp_path / "s.nxs").rename(moved / "s.nxs")
    (tmp_path / "s_parts").rename(moved / "s_parts")
    monkeypatch.chdir(tmp_path.parent)
    expected = read_series(our_import)["data"]
    assert np.array_equal(read_series(moved / "s.nxs")["data"], expected)
    assert np.array_equal(loadobj(str(moved / "s.nxs"), "image_series").data.nxdata, expected)


@pytest.mark.parametrize("estimator", ["mean", "clipped_mean"])
def test_dask_binning_identical(sweep, our_import, cluster, tmp_path, estimator):
    common = ["bins=4,20,20", "valid_range=0,300", f"estimator={estimator}", "output.plot=None"]
    dask = [
        "mp.method=dask",
        f"mp.dask.scheduler={cluster.scheduler_address}",
        "mp.dask.frames_per_task=3",
    ]
    run(["dials.mdx_bin_background", our_import, *common, "output.binned=a.nxs"], cwd=tmp_path)
    run(
        ["dials.mdx_bin_background", our_import, *common, *dask, "output.binned=b.nxs"],
        cwd=tmp_path,
    )
    run(["dials.mdx_bin_background", sweep, *common, *dask, "output.binned=c.nxs"], cwd=tmp_path)
    a = read_binned(tmp_path / "a.nxs")
    for name in ("b", "c"):
        other = read_binned(tmp_path / f"{name}.nxs")
        for key in ("signal", "errors", "pixel_count", "phi", "iy", "ix"):
            assert np.array_equal(other[key], a[key], equal_nan=True), (name, key)


def test_dask_diagnostics_identical(our_import, cluster, tmp_path):
    """Parity sums on dask workers: the same map, dispersion and held-out figures as here."""
    common = ["bins=4,20,20", "valid_range=0,300", "estimator=clipped_mean"]
    diagnostics = [*common, "diagnostics=True"]
    dask = [
        "mp.method=dask",
        f"mp.dask.scheduler={cluster.scheduler_address}",
        "mp.dask.frames_per_task=3",
    ]
    bin_map(tmp_path, our_import, "plain", *common)
    bin_map(tmp_path, our_import, "a", *diagnostics, "output.json=a.json")
    bin_map(tmp_path, our_import, "b", *diagnostics, *dask, "output.json=b.json")
    plain, a, b = (read_binned(tmp_path / f"{n}.nxs") for n in ("plain", "a", "b"))
    for key in ("signal", "errors", "pixel_count", "dispersion"):
        assert np.array_equal(a[key], plain[key], equal_nan=True), key
        assert np.array_equal(b[key], plain[key], equal_nan=True), key
    qa, qb = (json.loads((tmp_path / f"{n}.json").read_text())["runs"][0]["quality"] for n in "ab")
    assert qa["heldout"]["pixels"] == qb["heldout"]["pixels"] > 0
    assert qa["heldout"]["model_error_sq"] == pytest.approx(qb["heldout"]["model_error_sq"], 1e-12)


def test_local_dask_cluster_started_by_the_command(sweep, our_import, tmp_path):
    a = read_binned(bin_map(tmp_path, our_import, "a", "bins=4,20,20"))
    outputs = {}
    for name, verbosity in (("b", []), ("c", ["-vv"])):
        cmd = ["dials.mdx_bin_background", our_import, "bins=4,20,20", "mp.method=dask"]
        cmd += ["mp.nproc=2", "output.plot=None", f"output.binned={name}.nxs", *verbosity]
        outputs[name] = run(cmd, cwd=tmp_path)
        b = read_binned(tmp_path / f"{name}.nxs")
        assert np.array_equal(a["signal"], b["signal"], equal_nan=True)
    # dask's own chatter (scheduler start, workers registering) only at DIALS' debug level.
    assert "dask:" not in outputs["b"].stdout and not outputs["b"].stderr
    assert "dask: " in outputs["c"].stdout and not outputs["c"].stderr


def test_killed_worker_leaves_nothing_and_rerun_is_clean(tmp_path):
    """Kill the dask workers mid-import: no output that looks valid; a re-run succeeds."""
    spec = SweepSpec(n_frames=60, modules=(3, 2), seed=5)  # long enough to kill mid-run
    images = write_sweep(tmp_path / "img", spec)
    from dials_mdxbg.testing.pilatus import import_sweep

    expt = import_sweep(tmp_path / "img", images)
    work = tmp_path / "work"
    work.mkdir()
    # A cluster of our own (in another process) whose workers we can kill; a task
    # whose worker dies is not retried, so the kill fails the job.
    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0")
    scheduler = subprocess.Popen(
        [
            str(BIN / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(tmp_path / "sched.json"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    workers = None
    try:
        for _ in range(100):
            if (tmp_path / "sched.json").exists():
                break
            time.sleep(0.1)
        address = json.loads((tmp_path / "sched.json").read_text())["address"]
        workers = subprocess.Popen(
            [
                str(BIN / "dask"),
                "worker",
                address,
                "--nworkers",
                "2",
                "--nthreads",
                "1",
                "--no-dashboard",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        cmd = [
            str(BIN / "dials.mdx_import"),
            str(expt),
            "output.data=k.nxs",
            "chunks=2,211,493",
            "mp.method=dask",
            f"mp.dask.scheduler={address}",
            "mp.dask.frames_per_task=2",
            "mp.dask.worker_timeout=5",
        ]
        proc = subprocess.Popen(
            cmd,
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, NO_COLOR="1"),
        )
        # Wait until parts are being written, then kill every worker.
        deadline = time.time() + 60
        while time.time() < deadline:
            if any(p.name.startswith(".k_parts.part-") for p in work.iterdir()):
                parts_dir = next(p for p in work.iterdir() if p.name.startswith(".k_parts"))
                if any(parts_dir.iterdir()):
                    break
            time.sleep(0.05)
        os.killpg(workers.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode != 0, out[-2000:]
        assert "Traceback" not in err and err.strip().count("\n") == 0, err
        assert sorted(p.name for p in work.iterdir()) == []  # not even the log (README)
    finally:
        for p in (workers, scheduler):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    # Re-running starts clean and gives the single-process result.
    run(
        [
            "dials.mdx_import",
            expt,
            "output.data=k.nxs",
            "chunks=2,211,493",
            "mp.method=dask",
            "mp.nproc=2",
        ],
        cwd=work,
    )
    run(["dials.mdx_import", expt, "output.data=ref.nxs", "chunks=2,211,493"], cwd=work)
    assert np.array_equal(
        read_series(work / "k.nxs")["data"], read_series(work / "ref.nxs")["data"]
    )


def test_dask_missing_gives_install_hint(sweep, tmp_path):
    code = (
        "import sys; sys.modules['distributed'] = None; "
        "from dials_mdxbg.command_line.mdx_import import run; "
        f"run(['{sweep}', 'output.data=x.nxs', 'mp.method=dask'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode != 0 and "pip install" in proc.stderr
    assert not (tmp_path / "x.nxs").exists()


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory):
    base = tmp_path_factory.mktemp("two")
    paths = []
    for name, seed in (("a", 1), ("b", 2)):
        spec = SweepSpec(n_frames=4, modules=(1, 1), seed=seed, template=f"{name}_#####.cbf")
        paths += [str(p) for p in write_sweep(base, spec)]
    run(["dials.import", *paths, "output.experiments=both.expt"], cwd=base)
    return base / "both.expt"


def test_several_imagesets(two_sweeps, tmp_path):
    proc = run(["dials.mdx_import", two_sweeps, "output.data=x.nxs"], cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "imageset=N" in proc.stderr
    run(
        [
            "dials.mdx_import",
            two_sweeps,
            "output.data=x.nxs",
            "all_imagesets=True",
            "output.json=x.json",
        ],
        cwd=tmp_path,
    )
    run(["dials.mdx_import", two_sweeps, "output.data=one.nxs", "imageset=1"], cwd=tmp_path)
    summary = json.loads((tmp_path / "x.json").read_text())
    assert [s["imageset"] for s in summary["runs"]] == [0, 1]
    first, second = (
        read_series(tmp_path / "x_imageset0.nxs"),
        read_series(tmp_path / "x_imageset1.nxs"),
    )
    assert not np.array_equal(first["data"], second["data"])
    assert np.array_equal(second["data"], read_series(tmp_path / "one.nxs")["data"])
    run(
        [
            "dials.mdx_bin_background",
            two_sweeps,
            "frames.all_imagesets=True",
            "bins=2,20,20",
            "output.binned=b.nxs",
            "output.plot=b.png",
            "output.json=b.json",
        ],
        cwd=tmp_path,
    )
    for i in (0, 1):
        assert (tmp_path / f"b_imageset{i}.png").exists()
        ref = bin_map(tmp_path, f"x_imageset{i}.nxs", "ref", "bins=2,20,20")
        assert np.array_equal(
            read_binned(tmp_path / f"b_imageset{i}.nxs")["signal"],
            read_binned(ref)["signal"],
            equal_nan=True,
        )
    binned = json.loads((tmp_path / "b.json").read_text())
    assert [r["imageset"] for r in binned["runs"]] == [0, 1]
    assert binned["verdict"]["ready_for_mdx2_correct"] == all(
        r["verdict"]["ready_for_mdx2_correct"] for r in binned["runs"]
    )
    jsonschema = pytest.importorskip("jsonschema")
    from dials_mdxbg.output.json_summary import SCHEMA_FILE

    schema = json.loads(SCHEMA_FILE.read_text())
    for one in (summary, binned):  # one summary per run, several imagesets in runs[]
        jsonschema.Draft202012Validator(schema).validate(one)


def test_slurm_through_dask_jobqueue(sweep, our_import, tmp_path, monkeypatch):
    """mp.dask.cluster=slurm, with stand-ins for sbatch/scancel that run the job locally."""
    pytest.importorskip("dask_jobqueue")
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "sbatch").write_text(
        "#!/bin/bash\n"
        "# Run the job script here, in the background, like a one-node SLURM.\n"
        'copy=$(mktemp); cp "${@: -1}" "$copy"  # dask-jobqueue deletes its script\n'
        'setsid bash "$copy" > /dev/null 2>&1 < /dev/null &\n'
        'echo "Submitted batch job $!"\n'
    )
    (fake / "scancel").write_text(
        '#!/bin/bash\nfor j in "$@"; do kill -- -"$j" 2>/dev/null; done\n'
    )
    (fake / "squeue").write_text("#!/bin/bash\n")
    for name in ("sbatch", "scancel", "squeue"):
        (fake / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    phil = tmp_path / "slurm.phil"
    phil.write_text(
        "mp { method = dask\n dask { cluster = slurm\n cores = 1\n memory = 2GB\n njobs = 1\n"
        " queue = test\n worker_timeout = 120 } }\n"
    )
    slurm = bin_map(tmp_path, our_import, "s", phil, "bins=4,20,20")
    local = bin_map(tmp_path, our_import, "l", "bins=4,20,20")
    assert np.array_equal(
        read_binned(slurm)["signal"],
        read_binned(local)["signal"],
        equal_nan=True,
    )
    # Without sbatch on the machine (a PATH of no folder that has one): one clear line.
    dirs = os.environ["PATH"].split(os.pathsep)[1:]
    monkeypatch.setenv(
        "PATH", os.pathsep.join(d for d in dirs if not shutil.which("sbatch", path=d))
    )
    proc = run(
        ["dials.mdx_bin_background", our_import, phil, "output.binned=x.nxs"],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0 and "sbatch not found" in proc.stderr


def test_distributed_warnings_go_to_our_log_not_stderr(capfd, caplog):
    """A lost worker makes distributed warn; stderr must keep only our one-line error."""
    pytest.importorskip("distributed")
    import logging

    from dials_mdxbg.jobs.engine import _distributed_logs_to_ours

    client_log = logging.getLogger("distributed.client")
    before = client_log.handlers[:]
    with caplog.at_level(logging.DEBUG, logger="dials.mdxbg.cluster"):
        with _distributed_logs_to_ours():
            client_log.warning("Couldn't gather 1 keys, rescheduling")
    assert "dask: Couldn't gather 1 keys, rescheduling" in caplog.text
    assert all(r.levelno == logging.DEBUG for r in caplog.records)  # debug log only (-v)
    assert "Couldn't gather" not in capfd.readouterr().err
    assert client_log.handlers == before  # restored afterwards


def test_unreachable_scheduler_gives_one_line(sweep, tmp_path):
    pytest.importorskip("distributed")
    proc = run(
        [
            "dials.mdx_import",
            sweep,
            "output.data=u.nxs",
            "mp.method=dask",
            "mp.dask.scheduler=tcp://127.0.0.1:1",  # nothing listens on port 1
            "mp.dask.timeout=2",
        ],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    assert "cannot reach the dask scheduler tcp://127.0.0.1:1" in err
    assert not list(tmp_path.glob("*.nxs")) and not list(tmp_path.glob(".*part*"))
