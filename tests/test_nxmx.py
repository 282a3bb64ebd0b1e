"""DECTRIS-style Eiger NXmx sweeps (bitshuffle/LZ4 HDF5) through our commands and mdx2.

The sweeps come from :mod:`dials_mdxbg.testing.eiger`; dxtbx 3.11 reads them with
``FormatNXmx``. The expected image series is computed here, independently of
our code, from dxtbx itself: raw counts, -1 where ``imageset.get_mask(i)`` is False.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import read_binned, read_series, run
from dials_mdxbg.testing.eiger import MASK_GAP, NXmxSpec, frame_counts, pixel_mask, write_nxmx_sweep

pytest.importorskip("hdf5plugin")  # registers bitshuffle/LZ4 with h5py in this process

#: The main sweep: one Eiger X module (in dxtbx's database, so mdx2 accepts it).
EIGER = {"n_frames": 6, "shape": (514, 1030), "seed": 5, "osc_start": 10.0, "osc_width": 0.5}
#: DECTRIS defaults: masked pixels stored as 0xFFFFFFFF; plus an underload value.
APPLIED = {
    "n_frames": 3,
    "shape": (96, 150),
    "seed": 9,
    "name": "applied",
    "pixel_mask_applied": True,
    "underload_value": 0,
    "saturation_value": 20000,
}
FILTER_HINT = (
    "the command could not decode the bitshuffle/LZ4 frames: it must `import hdf5plugin` "
    "(when installed) before reading images, as dxtbx 3.11 does not"
)


def run_reader(cmd: list, cwd: Path):
    """``run`` a command that reads the HDF5 frames, with a hint if the filter is missing."""
    proc = run(cmd, cwd=cwd, check=False)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        hint = FILTER_HINT if "plugins" in output or "filter" in output else "failed"
        raise AssertionError(f"{cmd[0]}: {hint}:\n{output[-3000:]}")
    return proc


def dxtbx_series(experiments) -> np.ndarray:
    """What the image series must hold: dxtbx's raw counts, -1 where its mask is False."""
    from dxtbx import flumpy

    iset = experiments.imagesets()[0]
    frames = []
    for i in range(len(iset)):
        raw = flumpy.to_numpy(iset.get_raw_data(i)[0]).astype(np.int32)
        valid = flumpy.to_numpy(iset.get_mask(i)[0]).astype(bool)
        frames.append(np.where(valid, raw, -1).astype(np.int32))
    return np.stack(frames)


def load_expt(path: Path):
    from dxtbx.model.experiment_list import ExperimentListFactory

    return ExperimentListFactory.from_json_file(str(path), check_format=True)


@pytest.fixture(scope="session")
def eiger(tmp_path_factory) -> tuple[Path, Path]:
    """The main sweep's master file and its dials.import experiment list."""
    directory = tmp_path_factory.mktemp("eiger")
    master = write_nxmx_sweep(directory, **EIGER)
    run(["dials.import", master, "output.experiments=eiger.expt"], cwd=directory)
    return master, directory / "eiger.expt"


@pytest.fixture(scope="session")
def eiger_import(eiger, tmp_path_factory) -> Path:
    """dials.mdx_import's image series of the main sweep (from the .expt)."""
    work = tmp_path_factory.mktemp("eiger_import")
    run_reader(["dials.mdx_import", eiger[1], "output.data=x.nxs"], cwd=work)
    return work / "x.nxs"


def test_dxtbx_reads_the_sweep_as_written(eiger):
    """The generator's contract: FormatNXmx, int32 counts, pixel_mask and trusted range."""
    from dxtbx import flumpy

    spec = NXmxSpec(**EIGER)
    iset = load_expt(eiger[1]).imagesets()[0]
    assert iset.get_format_class().__name__ == "FormatNXmx"
    assert len(iset) == 6 and iset.get_scan().get_oscillation() == pytest.approx((10.0, 0.5))
    panel = iset.get_detector()[0]
    assert panel.get_image_size() == (1030, 514)
    assert panel.get_trusted_range() == (-(2.0**31), float(spec.saturation_value))
    assert panel.get_beam_centre_px(iset.get_beam().get_s0()) == pytest.approx(spec.centre)
    good = pixel_mask(spec) == 0
    for i in (0, 5):
        raw = flumpy.to_numpy(iset.get_raw_data(i)[0])
        assert raw.dtype == np.int32
        counts = frame_counts(spec, i)
        assert np.array_equal(raw, counts.astype(np.int32))
        valid = flumpy.to_numpy(iset.get_mask(i)[0]).astype(bool)
        assert np.array_equal(valid, good & (counts < spec.saturation_value))


def test_import_equals_dxtbx_masked_frames(eiger, eiger_import):
    spec = NXmxSpec(**EIGER)
    expected = dxtbx_series(load_expt(eiger[1]))
    series = read_series(eiger_import)
    data = series["data"]
    assert data.dtype == np.int32 and data.shape == (6, 514, 1030)
    for k in range(6):
        assert np.array_equal(data[k], expected[k]), f"frame {k}"
    # What the masking had to handle is really there, and is -1.
    mask = pixel_mask(spec)
    assert (mask == MASK_GAP).sum() > 1000 and (mask > MASK_GAP).sum() == 11
    for k in (0, 5):
        counts = frame_counts(spec, k).astype(np.int64)
        assert (counts[mask > MASK_GAP] > 1000).any()  # noisy pixels: only the mask hides them
        assert np.all(data[k][mask != 0] == -1)
        over = counts >= spec.saturation_value
        assert over.sum() == spec.n_overload and np.all(data[k][over] == -1)
        assert np.array_equal(data[k] >= 0, (mask == 0) & ~over)
    assert np.allclose(series["phi"], 10.0 + 0.5 * np.arange(0.5, 6))
    assert np.allclose(series["exposure_times"], spec.exposure_time)


def test_import_master_file_directly(tmp_path):
    """Images instead of an .expt; DECTRIS' pixel_mask_applied values and an underload_value."""
    from dxtbx.model.experiment_list import ExperimentListFactory

    master = write_nxmx_sweep(tmp_path / "images", **APPLIED)
    run_reader(["dials.mdx_import", master, "output.data=y.nxs"], cwd=tmp_path)
    data = read_series(tmp_path / "y.nxs")["data"]
    experiments = ExperimentListFactory.from_filenames([str(master)])
    assert experiments.imagesets()[0].get_detector()[0].get_trusted_range() == (-1.0, 20000.0)
    assert np.array_equal(data, dxtbx_series(experiments))
    spec = NXmxSpec(**APPLIED)
    mask = pixel_mask(spec)
    assert np.all(frame_counts(spec, 0)[mask != 0] == 0xFFFFFFFF)
    assert np.all(data[:, mask != 0] == -1) and (data >= 0).sum() > 0.9 * data.size


def test_one_step_binning_equals_binning_our_import(eiger, eiger_import, tmp_path):
    phil = ["bins=2,16,16", "valid_range=0,200", "output.plot=None"]
    run_reader(["dials.mdx_bin_background", eiger[1], *phil, "output.binned=one.nxs"], tmp_path)
    run(["dials.mdx_bin_background", eiger_import, *phil, "output.binned=two.nxs"], cwd=tmp_path)
    one, two = read_binned(tmp_path / "one.nxs"), read_binned(tmp_path / "two.nxs")
    assert set(one) == set(two)
    for key in one:
        assert np.array_equal(one[key], two[key], equal_nan=True), key
    assert one["signal"].shape == (3, 33, 65)


@pytest.mark.mdx2
def test_equal_to_mdx2_import_data(eiger, eiger_import, tmp_path):
    proc = run(["mdx2.import_data", eiger[1], "--outfile", "m.nxs"], cwd=tmp_path, check=False)
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        if "not compatible with mdx2" in output:
            pytest.skip("mdx2.import_data rejects this detector (not in dxtbx's module database)")
        raise AssertionError(f"mdx2.import_data failed:\n{output[-3000:]}")
    ours, theirs = read_series(eiger_import), read_series(tmp_path / "m.nxs")
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype, key
        assert np.array_equal(ours[key], theirs[key]), key
