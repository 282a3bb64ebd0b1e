"""The map file's writer (output/binned.py): the signal written from its array into the
place HDF5 allocated, the extras' chunks deflated by us; read back by h5py and mdx2."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest

from dials_mdxbg.output.binned import SparseImage, write_binned


def _map_arrays(shape, seed=3):
    rng = np.random.default_rng(seed)
    signal = rng.gamma(2.0, 10.0, shape)
    signal[0, :2, :3] = np.nan  # empty bins
    count = rng.integers(0, 40, shape)
    count[0, :2, :3] = 0
    axes = tuple(np.arange(n, dtype=np.float64) * 1.5 + 0.25 for n in shape)
    extra = {
        "errors": (np.sqrt(signal) / 7).astype(np.float32),
        "pixel_count": count.astype(np.int32),
        "dispersion": rng.random(shape, dtype=np.float32),
        "filled": (count == 0).astype(np.uint8),
    }
    return axes, signal, extra


@pytest.mark.parametrize("shape", [(3, 50, 70), (13, 211, 205), (1, 1, 1)])
def test_map_reads_back_as_written_with_h5pys_layout(tmp_path, shape):
    """Every value reads back; the extras keep the chunks and filters h5py chooses
    itself (the chunks at the edges are partial), mdx2's fields stay plain."""
    axes, signal, extra = _map_arrays(shape)
    write_binned(tmp_path / "m.nxs", axes, signal, extra, {"program": "test"})
    reference = tmp_path / "ref.h5"
    with h5py.File(reference, "w") as ref:
        for name, values in extra.items():
            ref.create_dataset(name, data=values, compression="gzip", shuffle=True)
    with h5py.File(tmp_path / "m.nxs") as f, h5py.File(reference) as ref:
        group = f["entry/binned_image_series"]
        stored = group["signal"]
        assert stored.dtype == np.float64 and stored.chunks is None
        assert stored.compression is None
        assert np.array_equal(stored[()], signal, equal_nan=True)
        for name, values in zip(("phi", "iy", "ix"), axes):
            assert np.array_equal(group[name][()], values)
        for name, values in extra.items():
            ds = group[name]
            assert ds.dtype == values.dtype, name
            assert (ds.chunks, ds.compression, ds.shuffle) == (
                ref[name].chunks, "gzip", True), name  # fmt: skip
            assert np.array_equal(ds[()], values, equal_nan=values.dtype.kind == "f"), name
        assert group.attrs["signal"] == "signal"
        assert f["entry/dials_mdxbg/program"][()] == b"test"


def test_mdx2_and_nexpy_load_the_map(tmp_path):
    from mdx2.io import loadobj
    from nexusformat.nexus import nxload

    axes, signal, extra = _map_arrays((4, 30, 40))
    write_binned(tmp_path / "m.nxs", axes, signal, extra)
    grid = loadobj(str(tmp_path / "m.nxs"), "binned_image_series")
    assert np.array_equal(np.asarray(grid.data), signal, equal_nan=True)
    binned = nxload(str(tmp_path / "m.nxs"))["entry/binned_image_series"]
    assert binned.nxsignal.nxname == "signal"
    assert np.array_equal(binned.errors.nxvalue, extra["errors"], equal_nan=True)


def test_sparse_image_is_a_file_where_it_was_written():
    """Later writes win, unwritten bytes read as zeros, truncate cuts, and no byte of
    an unwritten range is held."""
    image = SparseImage()
    image.seek(10)
    image.write(b"abcdef")
    image.seek(12)
    image.write(b"XY")
    image.seek(1_000_000)
    image.write(b"end")
    assert image.size == 1_000_003
    assert sum(len(p) for _, p in image.pieces) == 11
    image.seek(8)
    assert image.read(10) == b"\0\0abXYef\0\0"
    image.seek(-3, io.SEEK_END)
    assert image.read(10) == b"end"
    image.truncate(13)
    image.seek(0)
    assert image.read() == b"\0" * 10 + b"abX"
