"""Byte-offset CBF frames read by frames/cbf_direct.py (file bytes here, decode in workers).

The references are outside our code: ``dxtbx.ext.uncompress`` for the decoder,
``imageset.get_raw_data`` for the pixels of real CBFs (``shared/realdata``)
and of generated sweeps, and dxtbx's own reading (``DIALS_MDXBG_DXTBX_READ=1``)
for whole image series.
"""

from __future__ import annotations

import bz2
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import read_series, run
from dials_mdxbg.errors import InputError
from dials_mdxbg.frames.cbf_direct import CBFDirect
from dials_mdxbg.frames.source import frame_source
from dials_mdxbg.native import lib
from kernel_twins import COMPILED, REFERENCE
from realdata import REALDATA, needs_realdata


def load(paths):
    from dxtbx.model.experiment_list import ExperimentListFactory

    return ExperimentListFactory.from_filenames([str(p) for p in paths])


def dxtbx_frame(imageset, i: int) -> np.ndarray:
    from dxtbx import flumpy

    return flumpy.to_numpy(imageset.get_raw_data(i)[0]).copy()


def packed_of(values: np.ndarray) -> bytes:
    """dxtbx's byte-offset compression of ``values`` (the decoder's reference input)."""
    from dxtbx.ext import compress
    from scitbx.array_family import flex

    return bytes(compress(flex.int(values.astype(np.int32).ravel().tolist())))


def uncompress(packed: bytes, shape) -> np.ndarray:
    from dxtbx import flumpy
    from dxtbx.ext import uncompress as dx_uncompress

    return flumpy.to_numpy(dx_uncompress(packed=packed, slow=shape[0], fast=shape[1])).copy()


DECODERS = ["compiled", "numpy"]


def decoder(kind: str):
    if kind == "compiled" and not lib.loaded():
        pytest.skip("C kernels not built")
    return COMPILED if kind == "compiled" else REFERENCE


# ---- the decoder ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", DECODERS)
def test_decoder_equals_dxtbx_on_every_delta_width(kind):
    rng = np.random.default_rng(5)
    shape = (37, 101)
    n = shape[0] * shape[1]
    # Runs of small steps, then 2-byte and 4-byte jumps, the int32 extremes and -1/-2 flags.
    values = rng.poisson(3, n).astype(np.int64)
    jumps = rng.choice(n, 300, replace=False)
    values[jumps[:100]] += rng.integers(-30000, 30000, 100)
    values[jumps[100:200]] = rng.integers(-(2**31), 2**31 - 1, 100)
    values[jumps[200:]] = rng.choice([-1, -2, 2**31 - 1, -(2**31) + 1, 127, -127, 128], 100)
    values = values.astype(np.int32)
    packed = packed_of(values)
    assert b"\x80\x00\x80" in packed  # the 4-byte step is exercised
    expected = uncompress(packed, shape)
    np.testing.assert_array_equal(expected.ravel(), values)
    got = decoder(kind).cbf_byte_offset(packed, shape)
    assert got.dtype == np.int32 and got.shape == shape
    np.testing.assert_array_equal(got, expected)
    # Bytes past the full frame are ignored, as dxtbx ignores them.
    out = np.full(shape, 7, dtype=np.int32)
    decoder(kind).cbf_byte_offset(packed + b"\x80\x01", shape, out)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("kind", DECODERS)
def test_decoder_wraps_like_dxtbx(kind):
    # A 4-byte delta of -2**31 (no 8-byte step in dxtbx) and sums past the int32 range.
    packed = b"\x7f" + b"\x80\x00\x80" + (2**31 - 1).to_bytes(4, "little", signed=True)
    packed += b"\x80\x00\x80" + (-(2**31)).to_bytes(4, "little", signed=True) + b"\x05"
    shape = (1, 4)
    np.testing.assert_array_equal(
        decoder(kind).cbf_byte_offset(packed, shape), uncompress(packed, shape)
    )


@pytest.mark.parametrize("kind", DECODERS)
@pytest.mark.parametrize("cut", [1, 2, 5])
def test_truncated_data_is_an_error(kind, cut):
    values = np.array([1, 2, 40000, 3, 2**30, 4], dtype=np.int32)
    packed = packed_of(values)
    with pytest.raises(ValueError, match="end before the frame is full"):
        decoder(kind).cbf_byte_offset(packed[:-cut], (2, 3))


# ---- which imagesets it reads, and the pixels ------------------------------------------


def real_cbfs() -> list[Path]:
    if not REALDATA.is_dir():
        return []
    return [
        REALDATA / "lcys/l-cyst_01_00001.cbf.gz",
        REALDATA / "lcys/l-cyst_04_00015.cbf.gz",
        REALDATA / "thau/thau_3_2_0001.cbf.bz2",
        REALDATA / "single/DLS_I03_smargon_0001.cbf.gz",
        REALDATA / "single/dlsnxs2cbf_therm_0001.cbf.gz",
        REALDATA / "single/ximg2701_00001.cbf.gz",
        REALDATA / "single/phi_scan_001.cbf.gz",
    ]


@needs_realdata
@pytest.mark.parametrize("path", real_cbfs(), ids=lambda p: p.name)
def test_real_cbf_pixels_equal_get_raw_data(path):
    imageset = load([path]).imagesets()[0]
    reader = CBFDirect.for_imageset(imageset)
    assert reader is not None, imageset.get_format_class().__name__
    expected = dxtbx_frame(imageset, 0)
    got = reader.read(0).decode(reader.take_buffer())
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


@needs_realdata
@pytest.mark.parametrize(
    "path",
    ["single/DLS_I23_P12M_thau_00001.cbf.gz", "snase/snc_newhead_00001.img.bz2"],
)
def test_other_formats_stay_with_dxtbx(path):
    imageset = load([REALDATA / path]).imagesets()[0]
    assert CBFDirect.for_imageset(imageset) is None


def test_generated_sweep_frames_equal_dxtbx(sweep):
    from dxtbx.model.experiment_list import ExperimentListFactory

    experiments = ExperimentListFactory.from_json_file(str(sweep))
    source = frame_source(experiments)
    assert isinstance(source.direct, CBFDirect)
    imageset = source.imageset
    for k in (0, 5, source.n_frames - 1):
        np.testing.assert_array_equal(source.read_raw(k).raw, dxtbx_frame(imageset, k))
    assert frame_source(experiments, direct=False).direct is None


# ---- faults: one readable line, never zeros -------------------------------------------


def _copy_lcys(tmp_path: Path, n: int = 3) -> list[Path]:
    files = sorted((REALDATA / "lcys").glob("l-cyst_01_*.cbf.gz"))[:n]
    out = []
    for f in files:
        shutil.copy(f, tmp_path / f.name)
        out.append(tmp_path / f.name)
    return out


@needs_realdata
def test_truncated_or_corrupt_files_are_one_line_errors(tmp_path):
    files = _copy_lcys(tmp_path)
    experiments = load(files)
    source = frame_source(experiments)
    assert isinstance(source.direct, CBFDirect)
    # A gzip stream cut short, then a complete gzip whose CBF pixel data are cut short.
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) // 2])
    content = gzip.decompress(data)
    files[2].write_bytes(gzip.compress(content[: len(content) - 5000]))
    for k, words in ((1, "truncated or corrupt compressed file"), (2, "end before the frame")):
        with pytest.raises(InputError) as err:
            _ = source.read_raw(k).raw
        message = str(err.value)
        assert words in message and files[k].name in message and "\n" not in message


@needs_realdata
@pytest.mark.parametrize("command", ["dials.mdx_import", "dials.mdx_bin_background"])
def test_truncated_image_on_the_command_line_is_one_line(tmp_path, command):
    # dxtbx reads every image while DIALS' parser imports them: its EOFError is ours to word.
    files = _copy_lcys(tmp_path)
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) // 2])
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run([command, *files], cwd=tmp_path, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "a compressed image is truncated" in lines[0], proc.stderr
    assert "unexpected failure" not in lines[0]
    after = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".log"))
    assert after == before  # nothing written (the log aside)


@needs_realdata
def test_a_file_missing_mid_sweep_is_named(tmp_path):
    files = _copy_lcys(tmp_path)
    source = frame_source(load(files))
    files[1].unlink()  # after the up-front checks of the first and last image
    with pytest.raises(InputError, match=r"image file .*l-cyst_01_00002.cbf.gz is missing"):
        source.read_raw(1)


@needs_realdata
def test_a_frame_of_another_size_is_named(tmp_path):
    files = _copy_lcys(tmp_path, 2)
    experiments = load(files)
    source = frame_source(experiments)
    other = gzip.decompress((REALDATA / "single/ximg2701_00001.cbf.gz").read_bytes())
    files[1].write_bytes(gzip.compress(other))
    with pytest.raises(InputError, match="belongs to another sweep"):
        _ = source.read_raw(1).raw


@needs_realdata
def test_bzip2_and_plain_files_read_as_dxtbx_reads_them(tmp_path):
    thau = REALDATA / "thau/thau_3_2_0002.cbf.bz2"
    plain = tmp_path / "thau_3_2_0002.cbf"
    plain.write_bytes(bz2.decompress(thau.read_bytes()))
    for path in (thau, plain):
        imageset = load([path]).imagesets()[0]
        reader = CBFDirect.for_imageset(imageset)
        np.testing.assert_array_equal(reader.read(0).decode(), dxtbx_frame(imageset, 0))


# ---- whole commands: direct reading gives dxtbx's image series -------------------------


@needs_realdata
@pytest.mark.parametrize("nproc", [1, 2])
def test_import_of_real_sweep_equals_dxtbx_reading(tmp_path, nproc):
    files = sorted((REALDATA / "lcys").glob("l-cyst_02_*.cbf.gz"))
    common = [*map(str, files), "chunks=5,211,493", f"mp.nproc={nproc}"]
    run(["dials.mdx_import", *common, "output.data=direct.nxs"], cwd=tmp_path)
    env = {"DIALS_MDXBG_DXTBX_READ": "1"}
    run(["dials.mdx_import", *common, "output.data=dxtbx.nxs"], cwd=tmp_path, env=env)
    direct, reference = read_series(tmp_path / "direct.nxs"), read_series(tmp_path / "dxtbx.nxs")
    assert direct.keys() == reference.keys()
    for key in reference:
        np.testing.assert_array_equal(direct[key], reference[key], err_msg=key)
