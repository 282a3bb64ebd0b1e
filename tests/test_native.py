"""The native kernels: C prototypes against their ctypes declarations, selection, delegation."""

from __future__ import annotations

import ctypes
import re
import zlib
from importlib import resources

import numpy as np
import pytest

from dials_mdxbg.binning import grid as bgrid
from dials_mdxbg.binning import sums as bsums
from dials_mdxbg.native import lib as native
from dials_mdxbg.native.bin_kernels import FrameBin
from kernel_twins import REFERENCE
from kernel_twins import compiled as compiled_kernels

# C types of mdxbg_kernels.h and the ctypes type each must be declared with.
_C_TYPES = {
    "void": None,
    "int": ctypes.c_int,
    "int32_t": ctypes.c_int32,
    "int64_t": ctypes.c_int64,
    "uint32_t": ctypes.c_uint32,
    "double": ctypes.c_double,
}


def _ctype(declaration: str):
    """ctypes type of a C return type or parameter (``const int32_t *raw`` -> c_void_p)."""
    if "*" in declaration:
        return ctypes.c_void_p  # every pointer is passed as an address
    words = declaration.replace("const", " ").split()
    if words[0] not in _C_TYPES:
        raise AssertionError(f"no ctypes type known for C type {words[0]!r}: extend _C_TYPES")
    return _C_TYPES[words[0]]


def parse_header(text: str) -> dict:
    """{name: (return type, argument types)} of every ``MDX_API`` prototype."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)
    prototypes = {}
    for match in re.finditer(r"MDX_API\s+([\w\s*]+?)\s*\b(mdx_\w+)\s*\(([^)]*)\)\s*;", text):
        restype, name, params = match.groups()
        params = [p for p in params.split(",") if p.strip() not in ("", "void")]
        prototypes[name] = (_ctype(restype), tuple(_ctype(p) for p in params))
    return prototypes


def mismatches(header: dict, table: dict) -> list[str]:
    """Every way the Python table disagrees with the header."""
    problems = [f"{name}: in the header only" for name in header.keys() - table.keys()]
    problems += [f"{name}: in the Python table only" for name in table.keys() - header.keys()]
    for name in header.keys() & table.keys():
        (c_res, c_args), (py_res, py_args) = header[name], table[name]
        if c_res is not py_res:
            problems.append(f"{name}: returns {c_res} in C, {py_res} in Python")
        if len(c_args) != len(py_args):
            problems.append(f"{name}: {len(c_args)} arguments in C, {len(py_args)} in Python")
        for i, (c, py) in enumerate(zip(c_args, py_args)):
            if c is not py:
                problems.append(f"{name}: argument {i} is {c} in C, {py} in Python")
    return problems


def _header() -> dict:
    text = (resources.files("dials_mdxbg.native") / "mdxbg_kernels.h").read_text()
    return parse_header(text)


def test_header_and_ctypes_declarations_agree():
    header = _header()
    assert len(header) == len(native.PROTOTYPES) == 30
    assert mismatches(header, native.PROTOTYPES) == []
    assert set(native.OPTIONAL) <= set(header) and set(native.OPTIONAL.values()) <= set(header)


def test_the_check_catches_each_kind_of_disagreement():
    header = _header()
    table = dict(native.PROTOTYPES)
    restype, args = table["mdx_bin_raw_frame"]
    table["mdx_bin_raw_frame"] = (restype, args[:-1])  # one argument missing
    restype, args = table["mdx_mask_frame"]
    table["mdx_mask_frame"] = (restype, (*args[:3], ctypes.c_int64, *args[4:]))  # int32 -> int64
    restype, args = table["mdx_encode_tiles"]
    table["mdx_encode_tiles"] = (restype, (ctypes.c_int64, *args[1:]))  # pointer -> integer
    table["mdx_have_isal"] = (None, ())  # int -> void
    found = mismatches(header, table)
    assert len(found) == 4, found
    assert all(
        any(name in problem for problem in found)
        for name in ("mdx_bin_raw_frame", "mdx_mask_frame", "mdx_encode_tiles", "mdx_have_isal")
    )
    del table["mdx_unshuffle4_into"]
    assert "mdx_unshuffle4_into: in the header only" in mismatches(header, table)


def test_the_backend_is_chosen_once(monkeypatch):
    native.library.cache_clear()
    try:
        monkeypatch.delenv("DIALS_MDXBG_PURE_NUMPY", raising=False)
        chosen = native.library()
        assert isinstance(chosen, ctypes.CDLL) and native.library() is chosen
        assert native.loaded() and native.name() == "compiled"
        # The flags are answered from the library itself.
        assert native.has("encoder") == bool(chosen.mdx_have_isal())
        assert native.has("decoder") == bool(chosen.mdx_have_libdeflate())
        monkeypatch.setenv("DIALS_MDXBG_PURE_NUMPY", "1")
        assert native.library() is chosen  # cached: the environment is read once
        native.library.cache_clear()
        assert native.library() is None and native.name() == "numpy"
        assert not native.has("encoder") and not native.has("decoder")
    finally:
        native.library.cache_clear()


def _frame(seed: int, shape=(45, 61)):
    rng = np.random.default_rng(seed)
    raw = rng.integers(-3, 60, shape).astype(np.int32)
    raw[2, :] = 1048600  # above the trusted range
    static = rng.random(shape) > 0.1
    shadow = np.ones(shape, bool)
    shadow[:, 10:20] = False
    return raw, static, shadow


def _same_sums(a: bsums.BinSums, b: bsums.BinSums) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("total", "count", "total_sq"))


@pytest.mark.parametrize("case", ["float", "shadow", "strided", "int16"])
def test_the_compiled_backend_hands_what_it_cannot_take_to_the_reference(case):
    """Inputs the C kernels refuse give the reference's results, through the same call."""
    compiled, reference = compiled_kernels(), REFERENCE
    raw, static, shadow = _frame(1)
    trusted = (-1.0, 1048500.0)
    extra = None
    if case == "float":
        raw = raw.astype(np.float64) + 0.25
    elif case == "shadow":
        extra = shadow
    elif case == "strided":
        raw = np.asfortranarray(raw)
    else:
        raw = np.clip(raw, -3, 30000).astype(np.int16)
    for kernels in (compiled, reference):
        masked, n = kernels.mask_frame(raw, static, trusted, extra)
        planes, n_planes = kernels.mask_to_planes(raw, static, trusted, extra)
        ref_masked, ref_n = reference.mask_frame(raw, static, trusted, extra)
        assert np.array_equal(masked, ref_masked) and n == n_planes == ref_n
        assert np.array_equal(planes.transpose(1, 2, 0).copy().view("<i4")[..., 0], ref_masked)
    grid = bgrid.BinGrid((1, *raw.shape), (1, 10, 7))
    sums = {}
    for kernels in (compiled, reference):
        acc = bsums.BinSums.zeros(grid.out_shape)
        to = FrameBin(0, grid.y_index, grid.x_edges, (0, 50), acc)
        n = kernels.bin_raw_frame(raw, static, trusted, extra, to)
        sums[kernels.name] = (acc, n)
    assert sums["compiled"][1] == sums["numpy"][1]
    assert _same_sums(sums["compiled"][0], sums["numpy"][0])
    tiles = np.array([(y, x) for y in range(0, 45, 16) for x in range(0, 61, 32)], np.int64)
    encoded = [
        k.encode_tiles(raw, static, trusted, (16, 32), tiles, 1, extra)
        for k in (compiled, reference)
    ]
    assert encoded[0][1] == encoded[1][1]
    data = [
        [zlib.decompressobj(-15).decompress(bytes(p)) for tile in e[0] for p, _, _ in tile]
        for e in encoded
    ]
    assert data[0] == data[1]


def test_blocks_the_bin_kernel_refuses_are_binned_by_the_reference():
    """A strided block, or one with pixels to leave out, still gives the reference sums."""
    compiled, reference = compiled_kernels(), REFERENCE
    rng = np.random.default_rng(4)
    block = rng.integers(-1, 90, (6, 40, 50)).astype(np.int32)
    keep = rng.random(block.shape) > 0.2
    grid = bgrid.BinGrid(block.shape, (4, 9, 11))
    f_bins, y_bins = grid.phi_index, grid.y_index
    for data, mask in [(block[:, :, ::-1], None), (block, keep), (block, None)]:
        results = []
        for kernels in (compiled, reference):
            acc = bsums.BinSums.zeros(grid.out_shape)
            kernels.bin_block(data, f_bins, y_bins, grid.x_edges, (0, 80), acc, mask)
            results.append(acc)
        assert _same_sums(*results)
        assert results[0].count.sum() > 0


def _stored_chunk(rng, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A chunk of counts (with masked -1s and large values) and its shuffled byte planes."""
    chunk = rng.integers(-1, 120, shape).astype(np.int32)
    chunk.flat[rng.integers(0, chunk.size, 40)] = 70000  # outside every valid range below
    planes = np.ascontiguousarray(chunk.view(np.uint8).reshape(-1, 4).T).reshape(-1)
    return chunk, planes


@pytest.mark.parametrize("valid_range", [(0, 100), (3, 50), (-5, 100), None])
def test_binning_a_chunk_from_its_planes_gives_the_block_sums(valid_range):
    """Chunk by chunk (bins cut at chunk edges, part of the frames, edge chunks) from the
    byte planes, in C and in the numpy twin: the sums of bin_block on the whole block,
    or nothing added and False where squares might not add up exactly."""
    from dials_mdxbg.native.bin_kernels import add_chunk_planes, bin_block, bin_chunk_planes

    compiled_kernels()
    rng = np.random.default_rng(8)
    nf, ny, nx = 7, 23, 61
    cf, cy, cx = 4, 9, 16  # 16 columns: bins of 7 are cut by every chunk edge
    grid = bgrid.BinGrid((nf, ny, nx), (3, 5, 7))
    stored = {}
    for f0 in range(0, nf, cf):
        for y0 in range(0, ny, cy):
            for x0 in range(0, nx, cx):
                stored[f0, y0, x0] = _stored_chunk(rng, (cf, cy, cx))
    block = np.empty((nf, ny, nx), dtype=np.int32)
    for (f0, y0, x0), (chunk, _) in stored.items():
        part = block[f0 : f0 + cf, y0 : y0 + cy, x0 : x0 + cx]
        part[...] = chunk[: part.shape[0], : part.shape[1], : part.shape[2]]
    expected = bsums.BinSums.zeros(grid.out_shape)
    bin_block(block[1:], grid.phi_index[1:], grid.y_index, grid.x_edges, valid_range, expected)
    for add in ("compiled", "numpy"):
        acc = bsums.BinSums.zeros(grid.out_shape)
        added = []
        for (f0, y0, x0), (_, planes) in stored.items():
            a, b = max(1 - f0, 0), min(cf, nf - f0)  # frames 1.. of the series
            extent = (min(cy, ny - y0), min(cx, nx - x0), x0)
            f_bins = grid.phi_index[f0 + a : f0 + b]
            y_bins = grid.y_index[y0 : y0 + extent[0]]
            args = ((cf, cy, cx), (a, b), extent, f_bins, y_bins, grid.x_edges, valid_range, acc)
            if add == "compiled":
                added.append(bin_chunk_planes(planes, *args))
            else:
                add_chunk_planes(planes, *args)
        if add == "numpy" or all(added):
            assert _same_sums(acc, expected)
        else:  # squares of the whole int32 range: the caller bins the block instead
            assert valid_range is None and not any(added) and acc.count.sum() == 0


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_unshuffle_from_a_later_frame_of_a_chunk(backend, monkeypatch):
    """unshuffle_into(first=k) gives frames k.. of the chunk, in C and in numpy."""
    from dials_mdxbg.native.chunk_codec import unshuffle_into

    native.library.cache_clear()
    if backend == "numpy":
        monkeypatch.setenv("DIALS_MDXBG_PURE_NUMPY", "1")
    try:
        assert native.name() == backend
        chunk, planes = _stored_chunk(np.random.default_rng(2), (5, 6, 10))
        for data in (planes, planes.tobytes()):
            out = np.full((2, 4, 13), 7, dtype=np.int32)
            unshuffle_into(data, chunk.shape, out, 5, first=3)
            assert np.array_equal(out[:, :, 5:], chunk[3:5, :4, :8])
            assert (out[:, :, :5] == 7).all()
    finally:
        native.library.cache_clear()
    with pytest.raises(ValueError):
        unshuffle_into(planes, chunk.shape, np.empty((3, 4, 10), np.int32), 0, first=3)


def _shell_inputs(seed: int, shape=(37, 53), cells=(5, 8)):
    """A masked frame with negative and out-of-range counts, an excluded patch, joint
    cells in runs, and a residual basis on a (bands, sectors) grid."""
    from dials_mdxbg.binning.shells import ResidualBasis

    rng = np.random.default_rng(seed)
    frame = rng.integers(-1, 70, shape).astype(np.int32)
    frame[3, :7] = -5
    excluded = np.zeros(shape, bool)
    excluded[10:14, 20:30] = True
    joint = np.sort(rng.integers(0, 40, shape), axis=1).astype(np.int32)
    nb, ns = cells
    b0 = rng.integers(0, nb - 1, shape)
    s0 = rng.integers(0, ns, shape)
    basis = ResidualBasis(
        (b0 * ns + s0).astype(np.int32),
        (b0 * ns + (s0 + 1) % ns).astype(np.int32),
        rng.random(shape, dtype=np.float32),
        rng.random(shape, dtype=np.float32),
        rng.integers(0, nb * ns, shape).astype(np.int32),
        ns,
    )
    return rng, frame, excluded, joint, basis


@pytest.mark.parametrize("valid_range", [(0, 50), (-3, 60), None])
@pytest.mark.parametrize("with_excluded", [False, True])
def test_shell_fit_kernel_gives_the_numpy_twins_bits(valid_range, with_excluded):
    from dials_mdxbg.native import shell_kernels as sk

    assert native.loaded()
    _, frame, excluded, joint, _ = _shell_inputs(3)
    ex = excluded if with_excluded else None
    rows, nx = frame.shape
    # Map bins of 4 rows and of uneven column runs.
    y_index = np.arange(rows) // 4
    x_index = np.repeat(np.arange(6), [9, 9, 9, 9, 9, nx - 45])
    sums = []
    for fn in (sk.fit_frame, sk.fit_frame_numpy):
        target = (np.full(40, 2.0), np.full(40, 0.5), np.ones(frame.shape, np.float32),
                  np.zeros(frame.shape, np.float32))  # fmt: skip
        box = np.full((y_index[-1] + 1, 6), 3, dtype=np.int64)
        for t in (0.1, 0.37):  # two frames into the same sums
            fn(frame, joint, ex, valid_range, t, *target, y_index, x_index, box)
        sums.append((*target, box))
    for c_sum, np_sum in zip(*sums):
        assert c_sum.dtype == np_sum.dtype and np.array_equal(c_sum, np_sum)
    # Something was added and the excluded pixels were not.
    assert sums[0][0].sum() > 80.0
    if with_excluded:
        assert (sums[0][3][excluded] == 0).all()
    # The map bins count each valid pixel once per frame.
    assert sums[0][4].sum() - 3 * sums[0][4].size == 2 * (sums[0][3] > 0).sum()


@pytest.mark.parametrize("n_terms", [1, 2])
@pytest.mark.parametrize("valid_range", [(0, 50), None])
def test_shell_score_kernel_matches_the_numpy_twin(n_terms, valid_range):
    from dials_mdxbg.native import shell_kernels as sk

    assert native.loaded()
    rng, frame, excluded, _, basis = _shell_inputs(5)
    cells = 40
    parts = [rng.random(frame.shape, dtype=np.float32) + 0.5 for _ in range(3)]
    terms = [
        sk.PhiTerm(rng.random(cells, dtype=np.float32) + 0.5,
                   sk.inverse_counts(rng.random(cells) * 50),
                   sk.inverse_counts(rng.random(cells) * 50), w)  # fmt: skip
        for w in (0.3, 0.7)[:n_terms]
    ]
    got = [np.zeros(6), np.zeros(6)]
    sk.score_frame(frame, excluded, valid_range, 0.2, basis, *parts, terms, got[0])
    sk.score_frame_numpy(frame, excluded, valid_range, 0.2, basis, *parts, terms, got[1])
    np.testing.assert_allclose(got[0], got[1], rtol=1e-6)
    valid = (frame != -1) & ~excluded
    if valid_range:
        valid &= (frame >= valid_range[0]) & (frame <= valid_range[1])
    assert got[0][5] == valid.sum() and got[0][1] == frame[valid].sum() / (0.2 * 0.2)
