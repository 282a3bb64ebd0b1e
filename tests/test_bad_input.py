"""Bad input: one readable line on stderr, non-zero exit, no traceback, no output file."""

from __future__ import annotations

import json
import os
import shutil

import h5py
import pytest

from conftest import run


def expect_error(cmd, cwd, fragment, outputs=("out.nxs", "out.json")):
    proc = run(cmd, cwd=cwd, check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr + proc.stdout
    assert err.count("\n") == 0, err  # exactly one line
    assert fragment.lower() in err.lower(), err
    leftovers = [p.name for p in cwd.iterdir() if p.name.startswith(".") and ".part-" in p.name]
    assert not leftovers
    for name in outputs:
        assert not (cwd / name).exists(), name
    return err


@pytest.fixture
def work(tmp_path):
    return tmp_path


def two_panel_expt(sweep, path):
    d = json.loads(sweep.read_text())
    det = d["detector"][0]
    det["panels"].append(dict(det["panels"][0], name="second"))
    det["hierarchy"]["children"].append({"panel": 1})
    path.write_text(json.dumps(d))
    return path


IMPORT = "dials.mdx_import"
BIN = "dials.mdx_bin_background"
OUT = "output.data=out.nxs"
BOUT = "output.binned=out.nxs"


def test_import_no_input(work):
    proc = run([IMPORT], cwd=work, check=False)
    assert proc.returncode != 0 and "no experiments or images given" in proc.stderr
    assert "Examples" in proc.stdout  # help shown


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["missing.expt", OUT], "no such file"),
        (["{sweep}", OUT, "nonsense=3"], "unknown command line parameter"),
        (["{sweep}", OUT, "chunks=1,2"], "exactly 3 required"),
        (["{sweep}", OUT, "chunks=a,b,c"], "chunks"),
        (["{sweep}", OUT, "chunks=0,-5,3"], "chunks must be positive"),
        (["{sweep}", OUT, "image_range=5,100"], "outside the scan"),
        (["{sweep}", OUT, "image_range=8,3"], "reversed"),
        (["{sweep}", OUT, "mp.nproc=0"], "mp.nproc"),
        (["{sweep}", OUT, "output.layout=zip"], "output.layout"),
        (["{sweep}", "output.data=nowhere/out.nxs"], "does not exist"),
        (["{sweep}", OUT, "imageset=2"], "only 1 imagesets"),
        (["{sweep}", OUT, "mask=missing.mask"], "no such file"),
    ],
)
def test_import_bad_arguments(sweep, work, args, fragment):
    args = [a.format(sweep=sweep) for a in args]
    expect_error([IMPORT, *args], work, fragment)


def test_import_unreadable_expt(work):
    (work / "garbage.expt").write_text("this is not json")
    expect_error([IMPORT, "garbage.expt", OUT], work, "not a readable experiment list")


def test_import_truncated_expt(sweep, work):
    (work / "cut.expt").write_text(sweep.read_text()[:2000])
    expect_error([IMPORT, "cut.expt", OUT], work, "not a readable experiment list")


def test_import_missing_images(sweep, work):
    images = work / "images"
    shutil.copytree(sweep.parent, images)
    expt = json.loads(sweep.read_text())
    expt["imageset"][0]["template"] = str(images / "bkg_#####.cbf")
    (images / "background.expt").write_text(json.dumps(expt))
    (images / "bkg_00012.cbf").unlink()
    expect_error([IMPORT, images / "background.expt", OUT], work, "missing")
    # A frame missing mid-sweep is only found while reading: still no output left.
    shutil.copy(sweep.parent / "bkg_00012.cbf", images)
    (images / "bkg_00007.cbf").unlink()
    expect_error([IMPORT, images / "background.expt", OUT, "chunks=3,211,493"], work, "")


def test_import_still_and_multi_imageset(sweep, work):
    images = sorted(str(p) for p in sweep.parent.glob("*.cbf"))[:3]
    run(
        [
            "dials.import",
            *images,
            "convert_sequences_to_stills=True",
            "output.experiments=stills.expt",
        ],
        cwd=work,
    )
    expect_error([IMPORT, "stills.expt", OUT], work, "choose one with imageset=N")
    err = expect_error([IMPORT, "stills.expt", OUT, "imageset=1"], work, "still")
    assert "dials.import <images> geometry.scan.oscillation=START,WIDTH" in err


def test_import_multi_panel(sweep, work):
    two_panel_expt(sweep, work / "two.expt")
    expect_error([IMPORT, "two.expt", OUT], work, "single-panel")


def test_import_bad_mask_file(sweep, work):
    (work / "bad.mask").write_bytes(b"not a pickle")
    expect_error([IMPORT, sweep, OUT, "mask=bad.mask"], work, "cannot read mask")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_import_unwritable_directory(sweep, work):
    locked = work / "locked"
    locked.mkdir(mode=0o500)
    expect_error([IMPORT, sweep, f"output.data={locked}/out.nxs"], work, "not writable")


def test_import_unwritable_directory_as_root(sweep, work, monkeypatch):
    """As root, permissions do not stop writes; a path under a file still must fail cleanly."""
    (work / "afile").write_text("x")
    expect_error([IMPORT, sweep, "output.data=afile/out.nxs"], work, "does not exist")


def test_bin_bad_arguments(our_import, sweep, work):
    series = our_import
    cases = [
        ([BIN, series, "bins=0,20,20", BOUT], "three positive integers"),
        ([BIN, series, "bins=10,20", BOUT], "three positive integers"),
        ([BIN, series, "bins=auto", "auto.pixels=None", BOUT], "auto.pixels"),
        ([BIN, series, "valid_range=200,0", BOUT], "greater than max"),
        ([BIN, series, "estimator=median", BOUT], "estimator"),
        ([BIN, series, "output.binned=nowhere/out.nxs"], "does not exist"),
        ([BIN, series, our_import, BOUT], "one image series"),
        ([BIN, series, sweep, BOUT], "not both"),
        ([BIN, sweep, BOUT, "mask=x.nxs"], "frames.mask"),
        ([BIN, sweep, BOUT, "frames.image_range=0,3"], "frames.image_range"),
    ]
    for cmd, fragment in cases:
        expect_error(cmd, work, fragment)


def test_bin_not_an_image_series(our_import, work):
    run([BIN, our_import, "output.binned=binned.nxs", "output.plot=None"], cwd=work)
    expect_error([BIN, "binned.nxs", BOUT], work, "not an image series")
    with h5py.File(work / "other.nxs", "w") as f:
        f.create_group("entry/image_series").create_dataset("data", data=[1])
    expect_error([BIN, "other.nxs", BOUT], work, "lacks dataset")


def test_bin_corrupt_files(our_import, work):
    data = our_import.read_bytes()
    (work / "cut.nxs").write_bytes(data[: len(data) // 3])
    expect_error([BIN, "cut.nxs", BOUT], work, "")
    (work / "noise.nxs").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(5000))
    expect_error([BIN, "noise.nxs", BOUT], work, "not a readable HDF5 file")
    (work / "text.nxs").write_text("hello")
    expect_error([BIN, "text.nxs", BOUT], work, "not a readable HDF5 file")


def test_bin_mdx2_file_without_datastore(mdx2_import, work):
    shutil.copy(mdx2_import, work / "lonely.nxs")
    expect_error([BIN, "lonely.nxs", BOUT], work, "is missing")


def test_bin_rejected_experiments(sweep, work):
    two_panel_expt(sweep, work / "two.expt")
    expect_error([BIN, "two.expt", BOUT], work, "single-panel")


def test_bin_all_masked_warns_and_writes_nan(our_import, work):
    proc = run([BIN, our_import, "valid_range=100000,200000", BOUT, "output.plot=p.png"], cwd=work)
    assert "all NaN" in proc.stdout
    with h5py.File(work / "out.nxs") as f:
        import numpy as np

        assert np.isnan(f["entry/binned_image_series/signal"][()]).all()
    assert (work / "p.png").exists()
