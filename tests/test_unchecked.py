"""Experiments loaded without format checks (frames/unchecked.py) give what the checked load gives.

Every kind of input the tests generate (Pilatus CBFs, Eiger NXmx in both
layouts, with bit-depth flags, 16-bit, gzip, a pixel_mask of several bit
values, an external mask given to dials.import) and the real data of
``shared/realdata``: the static masks, the trusted range, the axes,
every masked frame (also against dxtbx's ``get_mask(i)`` and ``get_raw_data(i)``
of the checked imageset), and the commands' outputs (series and maps) are the same
with and without format checks. Where our readers do not serve a format, the
experiments are loaded with format checks, and errors read as before.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import SMALL_SWEEP, read_binned, read_series, run
from dials_mdxbg.errors import InputError
from dials_mdxbg.frames.cbf_direct import CBFDirect
from dials_mdxbg.frames.nxmx_direct import NXmxDirect
from dials_mdxbg.frames.source import frame_source
from dials_mdxbg.frames.unchecked import is_unchecked, servable
from dials_mdxbg.testing.eiger import MASK_DEAD, MASK_NOISY, MASK_VIRTUAL, write_nxmx_sweep
from dials_mdxbg.testing.pilatus import SweepSpec, make_background_sweep
from realdata import realdata_file

CHECKED = {"DIALS_MDXBG_CHECK_FORMAT": "1"}

EIGER_CASES = {
    "dectris": {},
    "vds-2-files": {"layout": "vds", "frames_per_file": 3},
    "mask-applied-bit-depth": {"pixel_mask_applied": True, "bit_depth_readout": 32},
    "uint16-gzip": {"dtype": "uint16", "compression": "gzip", "saturation_value": 20000},
}


def load(expt: Path, check_format: bool):
    from dxtbx.model.experiment_list import ExperimentListFactory

    return ExperimentListFactory.from_json_file(str(expt), check_format=check_format)


def write_mask(path: Path, shape: tuple[int, int], seed: int) -> np.ndarray:
    """A dials.generate_mask-style pickle (one flex.bool panel): a block and random pixels out."""
    from dxtbx import flumpy

    rng = np.random.default_rng(seed)
    valid = rng.random(shape) > 0.01
    valid[10:30, 40:90] = False
    with open(path, "wb") as fh:
        pickle.dump((flumpy.from_numpy(valid),), fh)
    return valid


def dials_import(directory: Path, images: list, mask: Path | None = None) -> Path:
    args = [*images, "output.experiments=imported.expt"]
    run(["dials.import", *args, *([f"lookup.mask={mask}"] if mask else [])], cwd=directory)
    return directory / "imported.expt"


def assert_same_frames(expt: Path, served: type | None) -> None:
    """frame_source of the unchecked list equals that of the checked one, frame by frame.

    ``served``: the direct reader expected without format checks (None: a checked load).
    """
    from dxtbx import flumpy

    checked_list = load(expt, True)
    checked = frame_source(checked_list)
    unchecked = frame_source(load(expt, False))
    assert is_unchecked(unchecked.imageset) == (served is not None)
    if served is not None:
        assert isinstance(unchecked.direct, served)
    assert type(unchecked.direct) is type(checked.direct)
    assert np.array_equal(unchecked.static_valid, checked.static_valid)
    assert unchecked.masked_static == checked.masked_static
    assert unchecked.trusted_range == checked.trusted_range
    for name in ("phi", "iy", "ix", "exposure_times"):
        assert np.array_equal(getattr(unchecked.axes, name), getattr(checked.axes, name))
    iset = checked_list.imagesets()[0]
    for k in range(checked.n_frames):
        a, b = checked.read_raw(k).masked()[0], unchecked.read_raw(k).masked()[0]
        assert np.array_equal(a, b), k
        # dxtbx's own mask of the checked imageset (external lookup, rectangles, trusted range)
        raw = flumpy.to_numpy(iset.get_raw_data(k)[0]).astype(np.int32)
        valid = flumpy.to_numpy(iset.get_mask(k)[0]).astype(bool)
        assert np.array_equal(b, np.where(valid, raw, -1)), k


@pytest.fixture(scope="module", params=sorted(EIGER_CASES))
def eiger_expt(request, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp(f"eiger-{request.param}")
    master = write_nxmx_sweep(directory, n_frames=6, seed=5, **EIGER_CASES[request.param])
    return dials_import(directory, [master])


def test_eiger_sweeps_equal_without_format_checks(eiger_expt):
    assert_same_frames(eiger_expt, NXmxDirect)


def test_pixel_mask_bits_and_external_mask(tmp_path):
    """Every set bit of pixel_mask masks (bits 1, 4, 31 and others written here), ANDed
    with a mask file given to dials.import."""
    master = write_nxmx_sweep(tmp_path, n_frames=3, seed=9)
    with h5py.File(master, "r+") as fh:
        mask = fh["/entry/instrument/detector/pixel_mask"]
        values = mask[()]
        values[5, 5:12] = [4, 8, 256, 1 << 16, 1 << 30, 3, MASK_DEAD | MASK_NOISY]
        mask[...] = values
    assert {MASK_DEAD, MASK_NOISY, MASK_VIRTUAL, 4, 256, 1 << 16} <= set(np.unique(values))
    valid = write_mask(tmp_path / "user.mask", values.shape, seed=1)
    expt = dials_import(tmp_path, [master], tmp_path / "user.mask")
    assert_same_frames(expt, NXmxDirect)
    source = frame_source(load(expt, False))
    rectangles = source.masked_static["untrusted_rectangles"]
    assert rectangles == 0  # the panel's gaps are pixel_mask bits here, not rectangles
    assert np.array_equal(source.static_valid, (values == 0) & valid)


def test_pilatus_sweep_with_external_mask(tmp_path):
    expt = make_background_sweep(tmp_path, SMALL_SWEEP)
    assert_same_frames(expt, CBFDirect)
    images = sorted(str(p) for p in tmp_path.glob("*.cbf"))
    (tmp_path / "m").mkdir()
    write_mask(tmp_path / "m" / "user.mask", (195, 487), seed=2)
    masked = dials_import(tmp_path / "m", images, tmp_path / "m" / "user.mask")
    assert_same_frames(masked, CBFDirect)
    with_mask = frame_source(load(masked, False))
    assert with_mask.masked_static["experiment_mask"] > 0


@pytest.mark.parametrize(
    "images, served",
    [
        ("lcys/l-cyst_01_000??.cbf.gz", CBFDirect),  # Pilatus 2M, full CBF
        ("single/ximg2701_00001.cbf.gz", None),  # Pilatus 300K with a shadow model: checked
        ("single/dlsnxs2cbf_therm_0001.cbf.gz", None),  # Eiger CBF with a shadow model
        ("single/DLS_I03_smargon_0001.cbf.gz", None),  # Pilatus 6M with a shadow model
    ],
)
def test_real_data_equal_without_format_checks(images, served, tmp_path):
    folder = realdata_file(images.split("/")[0])
    files = sorted(str(p) for p in folder.glob(images.split("/")[1]))
    assert files
    assert_same_frames(dials_import(tmp_path, files), served)


def test_real_multi_panel_and_nxmx_subclass_load_checked(tmp_path):
    """The P12M (24 panels) and a DLS NXmx master are loaded with checks: the same errors."""
    for name in ("single/DLS_I23_P12M_thau_00001.cbf.gz", "single/Therm_6_2.nxs"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        expt = dials_import((tmp_path / name).parent, [realdata_file(name)])
        unchecked = load(expt, False)
        assert not servable(unchecked.imagesets()[0])
        errors = []
        for experiments in (load(expt, True), unchecked):
            with pytest.raises(InputError) as e:
                frame_source(experiments)
            errors.append(str(e.value))
        assert errors[0] == errors[1]
        expt.unlink()


@pytest.fixture(scope="module")
def pilatus_masked(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("pilatus-masked")
    spec = SweepSpec(n_frames=5, modules=(1, 2), osc_width=0.5, seed=4)
    make_background_sweep(directory, spec)
    write_mask(directory / "user.mask", (407, 487), seed=3)
    return dials_import(directory, sorted(directory.glob("*.cbf")), directory / "user.mask")


@pytest.fixture(scope="module")
def eiger_masked(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("eiger-masked")
    master = write_nxmx_sweep(directory, n_frames=5, seed=6, layout="vds", frames_per_file=2)
    write_mask(directory / "user.mask", (514, 1030), seed=4)
    return dials_import(directory, [master], directory / "user.mask")


@pytest.mark.parametrize("kind", ["pilatus", "eiger"])
def test_command_outputs_equal_with_and_without_format_checks(kind, request, tmp_path):
    expt = request.getfixturevalue(f"{kind}_masked")
    maps, series = {}, {}
    for name, env in (("unchecked", None), ("checked", CHECKED)):
        work = tmp_path / name
        work.mkdir()
        run(["dials.mdx_import", expt, "output.data=s.nxs", "output.json=s.json"], work, env=env)
        series[name] = read_series(work / "s.nxs")
        run(["dials.mdx_bin_background", expt, "bins=2,10,10", "valid_range=0,200",
             "output.plot=None", "output.binned=m.nxs"], work, env=env)  # fmt: skip
        maps[name] = read_binned(work / "m.nxs")
    for key, value in series["checked"].items():
        assert np.array_equal(value, series["unchecked"][key]), key
    for key, value in maps["checked"].items():
        assert np.array_equal(value, maps["unchecked"][key], equal_nan=value.dtype.kind == "f")


def test_one_step_on_eiger_imports_no_format_class(eiger_masked, tmp_path):
    """The point of it: neither FormatNXmx nor dxtbx.nexus (pint) is imported by the run."""
    code = (
        "import sys\n"
        "from dials_mdxbg.command_line.mdx_bin_background import run\n"
        f"run([{str(eiger_masked)!r}, 'output.plot=None', 'output.binned=m.nxs'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('dxtbx.format.FormatNXmx',"
        " 'dxtbx.nexus'))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_dask_workers_json_equals(eiger_masked):
    """What a dask task receives (the list as JSON) is loaded without checks, the same frames."""
    from dials_mdxbg.frames.source import frame_source_from_json

    checked = frame_source(load(eiger_masked, True))
    worker = frame_source_from_json(json.dumps(load(eiger_masked, True).to_dict()), {})
    assert is_unchecked(worker.imageset)
    assert np.array_equal(worker.static_valid, checked.static_valid)
    for k in (0, checked.n_frames - 1):
        assert np.array_equal(worker.read_raw(k).masked()[0], checked.read_raw(k).masked()[0])


@pytest.mark.parametrize("damage", ["missing", "not-a-pickle"])
def test_bad_mask_file_fails_as_before(damage, tmp_path):
    """A mask file named in the experiment list that dxtbx cannot load: the same one line."""
    master = write_nxmx_sweep(tmp_path, n_frames=2, seed=7)
    write_mask(tmp_path / "user.mask", (514, 1030), seed=5)
    expt = dials_import(tmp_path, [master], tmp_path / "user.mask")
    if damage == "missing":
        (tmp_path / "user.mask").unlink()
    else:
        (tmp_path / "user.mask").write_text("no mask")
    lines = []
    for env in (None, CHECKED):
        proc = run(["dials.mdx_bin_background", expt, "output.plot=None"], tmp_path,
                   check=False, env=env)  # fmt: skip
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        lines.append(proc.stderr.strip().splitlines())
    assert len(lines[0]) == 1 and lines[0] == lines[1]
    assert not list(tmp_path.glob("*.nxs"))


@pytest.mark.parametrize(
    ("dtype", "chunks"), [(np.uint32, (37, 20)), (np.uint32, (600, 7)), (np.uint8, None)]
)
def test_pixel_mask_read_in_bands_equals_reading_it_whole(tmp_path, dtype, chunks):
    from dials_mdxbg.frames.unchecked import _unmasked

    rng = np.random.default_rng(4)
    bits = rng.integers(0, 4, size=(600, 50)).astype(dtype) * rng.integers(0, 2, size=(600, 50))
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.create_dataset("mask", data=bits, chunks=chunks, compression="gzip" if chunks else None)
    with h5py.File(tmp_path / "m.h5", "r") as f:
        mask = f["mask"]
        for window in (np.s_[0:600, 0:50], np.s_[5:598, 3:41], np.s_[300:301, 0:50]):
            got = _unmasked(mask, window)
            assert got.dtype == np.bool_ and np.array_equal(got, bits[window] == 0), window
