"""Eiger/NXmx frames read from their chunks (frames/nxmx_direct.py, the C bitshuffle/LZ4 decoder).

The reference is always outside our code: HDF5 + hdf5plugin for the decoder,
``imageset.get_raw_data`` for the pixels, ``mdx2.import_data`` for the image
series, and a DLS-style virtual-dataset master (read in full by dxtbx) for
DECTRIS masters with several ``data_00000N`` files (which dxtbx 3.11 cannot
read past the first).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import read_binned, read_series, run
from dials_mdxbg.errors import InputError
from dials_mdxbg.frames.nxmx_direct import NXmxDirect
from dials_mdxbg.frames.source import frame_source
from dials_mdxbg.native import lib
from dials_mdxbg.native.detector_codecs import bslz4_decode, has_c_bslz4
from dials_mdxbg.testing.eiger import write_nxmx_sweep
from kernel_twins import COMPILED, REFERENCE
from realdata import realdata_file

hdf5plugin = pytest.importorskip("hdf5plugin")

#: One Eiger X module (mdx2 accepts it), 5 frames in data files of 2: three files.
SPLIT = {
    "n_frames": 5,
    "shape": (514, 1030),
    "seed": 21,
    "frames_per_file": 2,
    "n_overload": 8,
    "saturation_value": 30000,
}
needs_c = pytest.mark.skipif(not has_c_bslz4(), reason="C decoder not built (liblz4)")


def load(master: Path):
    from dxtbx.model.experiment_list import ExperimentListFactory

    return ExperimentListFactory.from_filenames([str(master)])


def dxtbx_frames(imageset, n: int | None = None) -> list[np.ndarray]:
    from dxtbx import flumpy

    count = len(imageset) if n is None else n
    return [flumpy.to_numpy(imageset.get_raw_data(i)[0]).copy() for i in range(count)]


def direct_frames(imageset) -> list[np.ndarray]:
    reader = NXmxDirect.for_imageset(imageset)
    assert reader is not None
    try:
        return [reader.read(k).decode().copy() for k in range(len(imageset))]
    finally:
        reader.close()


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> dict[str, Path]:
    """The same 5 frames behind a DECTRIS master (3 linked files) and a DLS-style VDS master."""
    out = {}
    for layout in ("dectris", "vds"):
        directory = tmp_path_factory.mktemp(f"split_{layout}")
        out[layout] = write_nxmx_sweep(directory, layout=layout, **SPLIT)
    return out


# ---- the decoder ------------------------------------------------------------------------


def lz4_decoder(kind: str):
    """The numpy reference (needs the lz4 package) or the C backend (needs liblz4)."""
    if kind == "numpy":
        pytest.importorskip("lz4.block")
        return REFERENCE
    if not has_c_bslz4():
        pytest.skip("C decoder not built (liblz4)")
    return COMPILED


@pytest.mark.parametrize("kind", ["avx2-if-cpu", "portable", "numpy"])
def test_decoder_equals_hdf5plugin_byte_for_byte(tmp_path, kind):
    decoder = lz4_decoder(kind)
    rng = np.random.default_rng(3)
    # Shapes cover n % 8 != 0 (raw tail), partial last blocks, plane lengths not a multiple of 32.
    shapes = [(1, 5), (7, 13), (3, 2049), (64, 64), (17, 6411), (514, 1030)]
    cases = []
    path = tmp_path / "chunks.h5"
    with h5py.File(path, "w") as f:
        for dtype in ("uint32", "int32", "uint16", "uint8", "uint64"):
            top = np.iinfo(dtype).max
            for shape in shapes:
                a = rng.poisson(30, shape).astype(dtype)
                a.flat[rng.integers(0, a.size, 4)] = top
                a.flat[rng.integers(0, a.size, 4)] = top - 1
                for nelems in (0, 8, 256):
                    name = f"{dtype}_{shape[0]}x{shape[1]}_{nelems}"
                    f.create_dataset(
                        name,
                        data=a[None],
                        chunks=(1, *shape),
                        **hdf5plugin.Bitshuffle(nelems=nelems, cname="lz4"),
                    )
                    cases.append(name)
    if kind == "portable":
        decoder.set_bslz4_simd(False)
    try:
        with h5py.File(path, "r") as f:
            for name in cases:
                dset = f[name]
                _, chunk = dset.id.read_direct_chunk((0, 0, 0))
                got = decoder.bslz4_decode(chunk, dset.shape[1:], dset.dtype)
                assert got.tobytes() == dset[0].tobytes(), name
    finally:
        if kind == "portable":
            decoder.set_bslz4_simd(True)


@pytest.mark.parametrize("kind", ["compiled", "numpy"])
def test_band_decoder_equals_hdf5plugin_rows(tmp_path, kind):
    """Bands of rows (what import threads decode) are the frame's rows, at any boundary."""
    decoder = lz4_decoder(kind)
    rng = np.random.default_rng(8)
    with h5py.File(tmp_path / "bands.h5", "w") as f:
        for shape in [(7, 13), (64, 64), (97, 6411), (514, 1030)]:
            a = rng.poisson(30, shape).astype(np.uint32)
            a.flat[rng.integers(0, a.size, 9)] = 2**32 - 1
            for nelems in (0, 8):
                d = f.create_dataset(
                    f"{shape}_{nelems}", data=a[None], chunks=(1, *shape),
                    **hdf5plugin.Bitshuffle(nelems=nelems, cname="lz4"),
                )  # fmt: skip
                _, chunk = d.id.read_direct_chunk((0, 0, 0))
                expected = d[0].view(np.int32)
                ny = shape[0]
                for row0, rows in [(0, ny), (0, 1), (1, 3), (ny // 2, 5), (ny - 1, 4), (3, 40)]:
                    if row0 >= ny:
                        continue
                    out = np.full((rows, shape[1]), -9, dtype=np.int32)
                    decoder.bslz4_decode_rows(chunk, shape, row0, out)
                    n = min(rows, ny - row0)
                    np.testing.assert_array_equal(out[:n], expected[row0 : row0 + n])
                    assert (out[n:] == -9).all()  # rows past the frame are left alone
    if kind == "compiled":
        with pytest.raises(ValueError, match="truncated|corrupt"):
            decoder.bslz4_decode_rows(chunk[: len(chunk) // 2], shape, ny - 2, out[:2])


@needs_c
def test_decoder_rejects_a_truncated_or_wrong_sized_chunk(tmp_path):
    with h5py.File(tmp_path / "c.h5", "w") as f:
        d = f.create_dataset(
            "d", data=np.arange(4096, dtype=np.uint32).reshape(1, 64, 64), chunks=(1, 64, 64),
            **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"),
        )  # fmt: skip
        _, chunk = d.id.read_direct_chunk((0, 0, 0))
    with pytest.raises(ValueError, match="truncated|corrupt"):
        bslz4_decode(chunk[: len(chunk) // 2], (64, 64), np.uint32)
    with pytest.raises(ValueError, match="size"):
        bslz4_decode(chunk, (64, 63), np.uint32)


# ---- the pixels dxtbx gives -------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"pixel_mask_applied": True},  # masked pixels stored as 0xFFFFFFFF -> -1
        {"bit_depth_readout": 32},  # 2**31 - 1 / - 2 -> -1 / -2
        {"dtype": "uint16", "saturation_value": 60000, "bit_depth_readout": 16,
         "pixel_mask_applied": True},
        {"compression": "none"},
    ],
    ids=["mask-applied", "bit-depth-32", "uint16", "uncompressed"],
)  # fmt: skip
def test_direct_pixels_equal_get_raw_data(tmp_path, extra):
    spec = {"n_frames": 3, "shape": (96, 150), "seed": 4, "n_overload": 10} | extra
    master = write_nxmx_sweep(tmp_path, **spec)
    if extra.get("bit_depth_readout") == 32:
        # Put the flag values themselves into a frame (the generator stores counts only).
        with h5py.File(tmp_path / "eiger_data_000001.h5", "a") as f:
            d = f["/entry/data/data"]
            frame = d[1]
            frame[5, 5:9] = [2**31 - 1, 2**31 - 2, 2**32 - 1, 2**31]
            d[1] = frame
    iset = load(master).imagesets()[0]
    expected = dxtbx_frames(iset)
    got = direct_frames(iset)
    for k, (a, b) in enumerate(zip(got, expected)):
        assert a.dtype == b.dtype == np.int32 and np.array_equal(a, b), k
    assert any((frame == -1).any() for frame in expected) or "compression" in extra


def test_direct_reader_follows_imageset_slices(split):
    iset = load(split["vds"]).imagesets()[0]
    sub = iset[2:5]
    reader = NXmxDirect.for_imageset(sub)
    for k in range(len(sub)):
        assert np.array_equal(reader.read(k).decode(), dxtbx_frames(iset, 2 + k + 1)[2 + k])
    reader.close()


def test_fallback_without_c_decoder_gives_the_same_pixels(split, monkeypatch):
    iset = load(split["vds"]).imagesets()[0]
    fast = direct_frames(iset)
    has = lib.has
    monkeypatch.setattr(lib, "has", lambda feature: feature != "bslz4" and has(feature))
    slow = direct_frames(iset)
    for a, b, c in zip(fast, slow, dxtbx_frames(iset)):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_frame_source_decodes_lazily_and_equals_dxtbx_path(split):
    experiments = load(split["vds"])
    direct, plain = frame_source(experiments), frame_source(experiments, direct=False)
    assert direct.direct is not None and plain.direct is None
    for k in range(direct.n_frames):
        frame = direct.read_raw(k)
        assert frame._raw is None  # only the chunk was read
        assert np.array_equal(frame.masked()[0], plain.read_raw(k).masked()[0]), k


# ---- several data files, missing files -------------------------------------------------


def test_dectris_master_with_several_files_is_read_in_full(split):
    dectris = load(split["dectris"]).imagesets()[0]
    vds = load(split["vds"]).imagesets()[0]
    reader = NXmxDirect.for_imageset(dectris)
    assert [(s.file.name, s.first, s.count) for s in reader.segments] == [
        ("eiger_data_000001.h5", 0, 2),
        ("eiger_data_000002.h5", 2, 2),
        ("eiger_data_000003.h5", 4, 1),
    ]
    reader.close()
    ours = direct_frames(dectris)
    # dxtbx reads the VDS master in full, and the DECTRIS one up to its first file only.
    for a, b in zip(ours, dxtbx_frames(vds)):
        assert np.array_equal(a, b)
    for a, b in zip(ours, dxtbx_frames(dectris, 2)):
        assert np.array_equal(a, b)
    with pytest.raises(Exception):
        dectris.get_raw_data(2)


def test_import_of_both_layouts_equals_mdx2_import_data(split, tmp_path):
    for layout, master in split.items():
        run(["dials.mdx_import", master, f"output.data={layout}.nxs", "mp.nproc=2"], cwd=tmp_path)
    dectris, vds = read_series(tmp_path / "dectris.nxs"), read_series(tmp_path / "vds.nxs")
    assert dectris["data"].shape[0] == SPLIT["n_frames"]
    for key in vds:
        assert np.array_equal(dectris[key], vds[key]), key
    assert (dectris["data"] == -1).any()
    run(["dials.import", split["vds"], "output.experiments=vds.expt"], cwd=tmp_path)
    proc = run(["mdx2.import_data", "vds.expt", "--outfile", "m.nxs"], cwd=tmp_path, check=False)
    if proc.returncode != 0:
        pytest.skip(f"mdx2.import_data failed here: {proc.stderr[-500:]}")
    theirs = read_series(tmp_path / "m.nxs")
    for key in theirs:
        assert vds[key].dtype == theirs[key].dtype and np.array_equal(vds[key], theirs[key]), key


def test_one_step_eiger_map_same_for_nproc_and_reader(split, tmp_path):
    maps = {}
    readers = (
        ("c1", 1, {}),
        ("c2", 2, {}),
        ("dxtbx", 2, {"DIALS_MDXBG_DXTBX_READ": "1"}),
        ("numpy", 2, {"DIALS_MDXBG_PURE_NUMPY": "1"}),
    )
    for name, nproc, env in readers:
        out = f"{name}.nxs"
        run(
            ["dials.mdx_bin_background", split["vds"], "bins=2,20,20", f"output.binned={out}",
             "output.plot=None", f"mp.nproc={nproc}"],
            cwd=tmp_path, env=env,
        )  # fmt: skip
        maps[name] = read_binned(tmp_path / out)
    for name in ("c2", "dxtbx", "numpy"):
        for key in maps["c1"]:
            assert np.array_equal(maps["c1"][key], maps[name][key], equal_nan=True), (name, key)


@pytest.mark.parametrize("layout", ["dectris", "vds"])
def test_missing_data_file_is_one_line_error(split, tmp_path, layout):
    directory = tmp_path / layout
    shutil.copytree(split[layout].parent, directory)
    (directory / "eiger_data_000002.h5").unlink()
    master = directory / split[layout].name
    with pytest.raises(InputError, match="eiger_data_000002.h5 .* is missing"):
        NXmxDirect.for_imageset(load(master).imagesets()[0])
    for cmd in (
        ["dials.mdx_import", master, "output.data=x.nxs"],
        ["dials.mdx_bin_background", master, "output.binned=b.nxs"],
    ):
        proc = run(cmd, cwd=tmp_path, check=False)
        err = proc.stderr.strip()
        assert proc.returncode != 0 and "Traceback" not in proc.stderr + proc.stdout
        assert err.count("\n") == 0 and "eiger_data_000002.h5" in err and "missing" in err, err
        assert not (tmp_path / "x.nxs").exists() and not (tmp_path / "b.nxs").exists()


def test_real_master_without_its_data_file_is_an_error_not_zeros(tmp_path):
    master = realdata_file("single/Therm_6_2.nxs")
    proc = run(["dials.mdx_import", master, "output.data=x.nxs"], cwd=tmp_path, check=False)
    err = proc.stderr.strip()
    assert proc.returncode != 0 and err.count("\n") == 0, err
    assert "Therm_6_2_000001.h5" in err and "missing" in err, err


@needs_c
@pytest.mark.parametrize("extra", [{}, {"bit_depth_readout": 32}], ids=["plain", "bit-depth-32"])
def test_fused_decode_and_bin_equals_decode_then_bin(tmp_path, extra):
    from dials_mdxbg.binning.grid import BinGrid
    from dials_mdxbg.binning.sums import BinSums

    # 7 x 2049: rows end inside bitshuffle blocks and the frame ends in a raw tail.
    master = write_nxmx_sweep(tmp_path, n_frames=3, shape=(37, 2049), seed=8, **extra)
    if extra:
        with h5py.File(tmp_path / "eiger_data_000001.h5", "a") as f:
            d = f["/entry/data/data"]
            frame = d[0]
            frame[3, 100:104] = [2**31 - 1, 2**31 - 2, 2**32 - 1, 7]
            d[0] = frame
    source = frame_source(load(master))
    grid = BinGrid((source.n_frames, *source.frame_shape), (2, 5, 7))
    fused, plain = BinSums.zeros(grid.out_shape), BinSums.zeros(grid.out_shape)
    for k in range(source.n_frames):
        frame = source.read_raw(k)
        assert frame.binner is not None
        n_fused = frame.bin_into(fused, grid, k, (-5, 60))
        again = source.read_raw(k)
        again.raw  # decoded: the two-step path
        assert again.bin_into(plain, grid, k, (-5, 60)) == n_fused
    for name in ("total", "count", "total_sq"):
        assert np.array_equal(getattr(fused, name), getattr(plain, name)), name


@needs_c
@pytest.mark.parametrize("cap", [40, 1024], ids=["overflowing", "roomy"])
def test_fused_decode_bin_counts_the_values_of_a_sampled_frame(tmp_path, cap):
    from dials_mdxbg.binning.grid import BinGrid
    from dials_mdxbg.binning.histogram import ValueHistogram
    from dials_mdxbg.binning.sums import BinSums

    master = write_nxmx_sweep(tmp_path, n_frames=2, shape=(37, 2049), seed=9, bit_depth_readout=32)
    with h5py.File(tmp_path / "eiger_data_000001.h5", "a") as f:
        d = f["/entry/data/data"]
        frame = d[1]
        frame[5, 10:14] = [2**31 - 1, 2**31 - 2, 0, 5000]  # masked, -2, zero, overflow
        d[1] = frame
    source = frame_source(load(master))
    grid = BinGrid((source.n_frames, *source.frame_shape), (1, 5, 7))
    for k in range(source.n_frames):
        fused, plain = BinSums.zeros(grid.out_shape), BinSums.zeros(grid.out_shape)
        counted, expected = ValueHistogram.zeros(cap), ValueHistogram.zeros(cap)
        frame = source.read_raw(k)
        n_fused = frame.bin_into(fused, grid, k, (0, 200), values=counted.counts)
        assert frame.needs_decode  # counted while decoding: never decoded whole
        again = source.read_raw(k)
        expected.add(again.masked()[0])
        assert again.bin_into(plain, grid, k, (0, 200)) == n_fused
        assert np.array_equal(counted.counts, expected.counts)
        assert counted.pixels == int(np.prod(source.frame_shape))
        for name in ("total", "count", "total_sq"):
            assert np.array_equal(getattr(fused, name), getattr(plain, name)), name
        # The numpy twin (no C decode) counts the same.
        twin = ValueHistogram.zeros(cap)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("dials_mdxbg.native.bin_kernels.has_c_bslz4", lambda: False)
            again = source.read_raw(k)
            again.bin_into(BinSums.zeros(grid.out_shape), grid, k, (0, 200), twin.counts)
        assert np.array_equal(twin.counts, expected.counts)
    assert counted.overflow >= (1 if cap == 40 else 0) and counted.masked > 0
