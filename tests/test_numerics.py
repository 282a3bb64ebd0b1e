"""Pure numpy pieces: codec, masking and binning, without files or DIALS."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dials_mdxbg.binning import grid as bgrid
from dials_mdxbg.binning import sums as bsums
from dials_mdxbg.frames.masking import rectangles_mask
from dials_mdxbg.native import chunk_codec as codec
from dials_mdxbg.native.bin_kernels import valid_mask
from dials_mdxbg.native.mask_kernels import apply_mask, valid_pixels
from kernel_twins import COMPILED


def reference_bin(data, bins, valid_range=None, excluded=None, times=None):
    """Independent slow reference: numpy.ma masked mean per bin, as mdx2 defines it."""
    n, ny, nx = data.shape
    sections = [np.array_split(np.arange(s), -(-s // b)) for s, b in zip(data.shape, bins)]
    masked = np.ma.masked_equal(data, -1)
    if valid_range is not None:
        masked = np.ma.masked_outside(masked, *valid_range)
    if excluded is not None:
        masked = np.ma.masked_where(excluded, masked)
    out = np.full([len(s) for s in sections], np.nan)
    for i, fs in enumerate(sections[0]):
        for j, ys in enumerate(sections[1]):
            for k, xs in enumerate(sections[2]):
                v = masked[fs[0] : fs[-1] + 1, ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1].mean()
                out[i, j, k] = np.nan if np.ma.is_masked(v) else v
        if times is not None:
            out[i] /= times[fs].mean()
    return out


def random_series(seed=0, shape=(9, 37, 53)):
    rng = np.random.default_rng(seed)
    data = rng.poisson(20, shape).astype(np.int32)
    data[:, 5:7, :] = -1  # a gap row band
    data[:, :, 30] = -1  # a gap column
    data[rng.random(shape) < 0.01] = 5000  # zingers
    data[2, 10:20, 10:25] = -1  # a fully masked patch
    return data


def test_shuffle_roundtrip_and_hdf5_compatibility(tmp_path, kernel_path):
    data = random_series()
    assert np.array_equal(codec.unshuffle(codec.shuffle(data), np.int32, data.shape), data)
    # A chunk we encode must be what HDF5's own gzip+shuffle pipeline decodes.
    with h5py.File(tmp_path / "c.h5", "w") as f:
        d = f.create_dataset(
            "d",
            shape=data.shape,
            dtype=np.int32,
            chunks=(3, 37, 53),
            compression="gzip",
            compression_opts=1,
            shuffle=True,
        )
        for f0 in range(0, 9, 3):
            d.id.write_direct_chunk((f0, 0, 0), codec.encode_chunk(data[f0 : f0 + 3]))
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert np.array_equal(f["d"][()], data)
        _, payload = f["d"].id.read_direct_chunk((3, 0, 0))
        decoded = codec.decode_chunk(payload, np.int32, (3, 37, 53))
        assert np.array_equal(decoded, data[3:6])


def test_trusted_range_matches_double_comparison():
    rng = np.random.default_rng(1)
    frame = rng.integers(-5, 30, (40, 50)).astype(np.int32)
    for lo, hi in [(-1.0, 20.0), (-0.5, 19.5), (0.0, 1e30), (-np.inf, 3.0), (25.0, 5.0)]:
        expected = (frame.astype(float) > lo) & (frame.astype(float) < hi)
        assert np.array_equal(valid_pixels(frame, (lo, hi)), expected), (lo, hi)


def test_apply_mask_leaves_input_alone_and_counts():
    frame = np.arange(20, dtype=np.int32).reshape(4, 5) - 1
    before = frame.copy()
    static = ~rectangles_mask((4, 5), [(3, 0, 5, 2)])  # x 3..4, y 0..1
    out, n_dynamic = apply_mask(frame, static, (-1.0, 15.0))
    assert np.array_equal(frame, before)
    expected = np.where((before > -1) & (before < 15) & static, before, -1)
    assert np.array_equal(out, expected)
    # -1 at (0,0) and 15..18 at the end are masked by the trusted range, not statically.
    assert n_dynamic == 1 + 4


def test_sections_match_array_split():
    for n in (1, 7, 20, 21, 407, 1475, 2463):
        for b in (1, 3, 10, 20, 500, 5000):
            sizes = bgrid.section_sizes(n, b)
            expected = [len(s) for s in np.array_split(np.arange(n), -(-n // b))]
            assert sizes.tolist() == expected


@pytest.fixture(params=["compiled", "numpy"])
def kernel_path(request, monkeypatch):
    """Run a test with the C kernels and again with the numpy reference."""
    from dials_mdxbg.native import lib

    lib.library.cache_clear()
    if request.param == "numpy":
        monkeypatch.setenv("DIALS_MDXBG_PURE_NUMPY", "1")
    assert lib.name() == request.param  # the selection the test is about
    yield request.param
    lib.library.cache_clear()


@pytest.mark.parametrize("bins", [(3, 10, 10), (4, 7, 11), (9, 37, 53), (1, 1, 1), (2, 50, 3)])
@pytest.mark.parametrize("valid_range", [None, (0, 200), (15, 25), (-3, 30)])
def test_binning_equals_masked_mean(bins, valid_range, kernel_path):
    data = random_series()
    times = np.linspace(0.5, 1.5, data.shape[0])
    grid = bgrid.BinGrid(data.shape, bins)
    sums = bsums.BinSums.zeros(grid.out_shape)
    bsums.accumulate_block(sums, grid, data, 0, 0, valid_range)
    signal, errors, count = bsums.finalize(sums, grid, times)
    expected = reference_bin(data, bins, valid_range, times=times)
    assert np.array_equal(np.isnan(signal), np.isnan(expected))
    np.testing.assert_allclose(signal, expected, rtol=1e-12, atol=0)
    assert count.sum() == valid_mask(data, valid_range).sum()


def test_partition_does_not_change_the_result(kernel_path):
    data = random_series(2)
    bins = (4, 6, 9)
    grid = bgrid.BinGrid(data.shape, bins)
    whole = bsums.BinSums.zeros(grid.out_shape)
    bsums.accumulate_block(whole, grid, data, 0, 0, (0, 200))
    parts = [bsums.BinSums.zeros(grid.out_shape) for _ in range(3)]
    # Ragged blocks: single frames, odd row bands, crossing bin borders.
    for f0, f1 in [(0, 1), (1, 4), (4, 9)]:
        for y0, y1 in [(0, 5), (5, 22), (22, 37)]:
            acc = parts[(f0 + y0) % 3]
            bsums.accumulate_block(acc, grid, data[f0:f1, y0:y1], f0, y0, (0, 200))
    merged = parts[0].merge(parts[1]).merge(parts[2])
    times = np.ones(data.shape[0])
    a = bsums.finalize(whole, grid, times)[0]
    b = bsums.finalize(merged, grid, times)[0]
    assert np.array_equal(a, b, equal_nan=True)


def test_excluded_pixels_and_all_masked():
    data = random_series(3)
    excluded = np.zeros(data.shape, bool)
    excluded[:, :, :20] = True
    grid = bgrid.BinGrid(data.shape, (3, 10, 10))
    sums = bsums.BinSums.zeros(grid.out_shape)
    bsums.accumulate_block(sums, grid, data, 0, 0, None, excluded)
    signal = bsums.finalize(sums, grid, np.ones(9))[0]
    expected = reference_bin(data, (3, 10, 10), None, excluded)
    np.testing.assert_allclose(signal, expected, rtol=1e-12)
    assert np.isnan(signal[:, :, :2]).all()
    # Everything masked: NaN everywhere, no error.
    empty = bsums.BinSums.zeros(grid.out_shape)
    bsums.accumulate_block(empty, grid, np.full(data.shape, -1, np.int32), 0, 0)
    assert np.isnan(bsums.finalize(empty, grid, np.ones(9))[0]).all()


def test_standard_error_matches_numpy(kernel_path):
    data = random_series(4)
    grid = bgrid.BinGrid(data.shape, (9, 37, 53))
    sums = bsums.BinSums.zeros(grid.out_shape)
    bsums.accumulate_block(sums, grid, data, 0, 0, (0, 100))
    _, errors, count = bsums.finalize(sums, grid, np.full(9, 2.0))
    values = data[(data != -1) & (data <= 100)].astype(float)
    assert count[0, 0, 0] == values.size
    expected = values.std(ddof=1) / np.sqrt(values.size) / 2.0
    np.testing.assert_allclose(errors[0, 0, 0], expected, rtol=1e-9)


def test_frame_by_frame_pieces_join_into_one_hdf5_chunk(tmp_path):
    """Per-frame deflate pieces, joined plane-major, are the chunk HDF5 expects."""
    data = random_series(5, shape=(4, 30, 40))
    planes = [codec.shuffle(frame).reshape(4, -1) for frame in data]
    pieces = [codec.encode_segment(planes[f][k]) for k in range(4) for f in range(4)]
    payload = codec.join_segments(pieces)
    with h5py.File(tmp_path / "j.h5", "w") as f:
        d = f.create_dataset(
            "d",
            shape=data.shape,
            dtype=np.int32,
            chunks=data.shape,
            compression="gzip",
            shuffle=True,
        )
        d.id.write_direct_chunk((0, 0, 0), payload)
    with h5py.File(tmp_path / "j.h5", "r") as f:
        assert np.array_equal(f["d"][()], data)


@pytest.mark.parametrize("trusted", [(-1.0, 1048500.0), (0.5, 30.5), (-np.inf, np.inf)])
def test_compiled_kernels_equal_numpy_reference(monkeypatch, trusted):
    from dials_mdxbg.native import lib

    lib.library.cache_clear()
    assert lib.name() == "compiled"
    kernels = COMPILED
    rng = np.random.default_rng(7)
    raw = rng.integers(-3, 40, (57, 83)).astype(np.int32)
    raw[3, 4] = 1048500
    static = rng.random(raw.shape) > 0.1
    ref, ref_n = apply_mask(raw, static, trusted)
    fast, fast_n = kernels.mask_frame(raw, static, trusted)
    planes, planes_n = kernels.mask_to_planes(raw, static, trusted)
    assert np.array_equal(fast, ref) and fast_n == ref_n == planes_n
    assert np.array_equal(planes.reshape(-1), codec.shuffle(ref))
    # The numpy reference gives the same bytes.
    lib.library.cache_clear()
    monkeypatch.setenv("DIALS_MDXBG_PURE_NUMPY", "1")
    try:
        assert lib.name() == "numpy"
        slow_planes, _ = COMPILED.mask_to_planes(raw, static, trusted)
        assert np.array_equal(slow_planes, planes)
    finally:
        lib.library.cache_clear()


def test_c_kernels_are_built_and_used():
    """The install builds the C kernels; without them every 'compiled' test would be numpy."""
    from dials_mdxbg.native import lib

    lib.library.cache_clear()
    assert lib.name() == "compiled"
    assert lib.has("encoder") and lib.has("decoder")


@pytest.mark.parametrize("trusted", [(-1.0, 1048500.0), (0.5, 30.5), (20.0, 10.0)])
@pytest.mark.parametrize("valid_range", [None, (0, 200), (15, 25), (-3, 30)])
def test_binning_raw_frames_equals_mask_then_bin(trusted, valid_range, kernel_path):
    """One-pass mask+bin of raw frames gives the sums of masking, then binning."""
    from dials_mdxbg.frames.raw_frame import RawFrame

    rng = np.random.default_rng(11)
    raw = rng.integers(-3, 40, (5, 37, 53)).astype(np.int32)
    raw[:, 3, 4] = 1048500
    raw[1, 7, 7] = -1  # a pixel that reads -1 but is inside the trusted range
    static = rng.random(raw.shape[1:]) > 0.1
    grid = bgrid.BinGrid(raw.shape, (2, 10, 7))
    fused = bsums.BinSums.zeros(grid.out_shape)
    two_step = bsums.BinSums.zeros(grid.out_shape)
    dynamic = []
    for k, frame in enumerate(raw):
        rf = RawFrame(frame, None, static, trusted)
        n = rf.bin_into(fused, grid, k, valid_range)  # on either path, always done
        masked, n_ref = apply_mask(frame, static, trusted)
        bsums.accumulate_block(two_step, grid, masked[np.newaxis], k, 0, valid_range)
        dynamic.append((n, n_ref))
    assert all(a == b for a, b in dynamic)
    assert np.array_equal(fused.total, two_step.total)
    assert np.array_equal(fused.count, two_step.count)
    assert np.array_equal(fused.total_sq, two_step.total_sq)
    assert fused.count.sum() > 0 or trusted == (20.0, 10.0)


def _stored_chunk(chunk: np.ndarray, level: int = 1) -> bytes:
    return codec.encode_chunk(chunk, level)


@pytest.mark.parametrize("edge", [(4, 30, 40), (3, 17, 25), (1, 1, 1)])
def test_chunks_decode_straight_into_a_block(edge, kernel_path):
    """In-place decoding (libdeflate or inflate + C unshuffle) equals decode_chunk + copy."""
    from isal import isal_zlib


    kernels = COMPILED
    rng = np.random.default_rng(3)
    shape = (4, 30, 40)
    chunk = rng.integers(-1, 70000, shape).astype(np.int32)
    payload = _stored_chunk(chunk)
    nf, rows, cols = edge
    nx = 55
    x0 = nx - cols  # the chunk's last column lands on the block's last column
    expected = np.full((nf, rows, nx), 7, np.int32)
    expected[:, :, x0:] = codec.decode_chunk(payload, np.int32, shape)[:nf, :rows, :cols]
    for fill in (kernels.decode_chunk_into, None):
        out = np.full((nf, rows, nx), 7, np.int32)
        if fill is None:
            kernels.unshuffle_into(codec.inflate(payload), shape, out, x0)
        else:
            fill(payload, shape, out, x0)
        assert np.array_equal(out, expected)
    # Not a chunk of that shape: refused (an error), nothing written.
    out = np.full((nf, rows, nx), 7, np.int32)
    with pytest.raises(isal_zlib.error):
        kernels.decode_chunk_into(payload[:-9], shape, out, x0)
    with pytest.raises(ValueError):
        kernels.decode_chunk_into(payload, (4, 30, 41), out, x0)
    assert (out == 7).all()


@pytest.mark.parametrize("chunk_yx", [(211, 493), (16, 23), (7, 64)])
def test_c_encoder_gives_the_pieces_of_the_planes_path(chunk_yx, kernel_path):
    """encode_tiles: the same data, piece by piece, as mask_to_planes + encode_segment."""
    import zlib


    kernels = COMPILED
    assert codec.has_c_encoder() == (kernel_path == "compiled")
    rng = np.random.default_rng(5)
    raw = rng.poisson(20, (70, 95)).astype(np.int32)
    raw[3, :] = 1048600  # above the trusted range
    static = np.ones(raw.shape, bool)
    static[:, 40:43] = False
    trusted = (-1.0, 1048500.0)
    cy, cx = chunk_yx
    tiles = np.array([(y, x) for y in range(0, 70, cy) for x in range(0, 95, cx)], np.int64)
    pieces, n_dynamic = kernels.encode_tiles(raw, static, trusted, chunk_yx, tiles, 1)
    planes, n_ref = kernels.mask_to_planes(raw, static, trusted)
    assert n_dynamic == n_ref == 92
    for (y0, x0), tile_pieces in zip(tiles.tolist(), pieces):
        for k, (payload, adler, length) in enumerate(tile_pieces):
            expected = np.zeros((cy, cx), np.uint8)
            part = planes[k, y0 : y0 + cy, x0 : x0 + cx]
            expected[: part.shape[0], : part.shape[1]] = part
            data = zlib.decompressobj(-15).decompress(bytes(payload))
            assert data == expected.tobytes()
            assert length == cy * cx and adler == zlib.adler32(data)
