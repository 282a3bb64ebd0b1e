"""The import's Huffman-only deflate pieces (mdx_deflate_huffman): any inflater reads them."""

from __future__ import annotations

import heapq
import zlib

import h5py
import numpy as np
import pytest

from dials_mdxbg.native import chunk_codec as codec
from dials_mdxbg.native import lib

pytestmark = pytest.mark.skipif(not lib.loaded(), reason="the C kernels are not built")

_SYNC_FLUSH = b"\x00\x00\xff\xff"


def _runs(rng, n: int) -> np.ndarray:
    """Runs of random bytes and lengths, around deflate's match limits (3, 258)."""
    lengths = rng.choice([1, 2, 3, 4, 8, 9, 257, 258, 259, 260, 261, 516, 1000], size=n // 50)
    values = rng.integers(0, 256, lengths.size).astype(np.uint8)
    return np.repeat(values, lengths)[:n]


def _skewed() -> np.ndarray:
    """Byte k appears Fibonacci(k) times: an unlimited Huffman code needs > 15 bits."""
    counts = [1, 1]
    while len(counts) < 24:
        counts.append(counts[-1] + counts[-2])
    data = np.repeat(np.arange(24, dtype=np.uint8), counts)
    return np.random.default_rng(3).permutation(data)


def _unlimited_depth(data: np.ndarray) -> int:
    """The longest code of an unlimited Huffman code of the bytes (and end of block)."""
    freq = np.bincount(data, minlength=257)
    freq[256] = 1
    heap = [(int(f), s, [s]) for s, f in enumerate(freq) if f]
    depth = dict.fromkeys((s for _, s, _ in heap), 0)
    heapq.heapify(heap)
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        for s in a[2] + b[2]:
            depth[s] += 1
        heapq.heappush(heap, (a[0] + b[0], min(a[1], b[1]), a[2] + b[2]))
    return max(depth.values())


def _planes() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    cases = {
        f"poisson{mean}": (rng.poisson(mean, 104023) & 255).astype(np.uint8)
        for mean in (0.3, 2, 20, 300)
    }
    cases["poisson300_byte1"] = (rng.poisson(300, 5000) >> 8).astype(np.uint8)
    gappy = rng.poisson(20, (211, 493)).astype(np.uint8)
    gappy[:, 100:107] = 0xFF  # a module gap's masked -1, in every row
    gappy[50:67] = 0xFF
    cases["noise_with_gaps"] = gappy.ravel()
    cases["zeros"] = np.zeros(104023, np.uint8)
    cases["all_0xff"] = np.full(4099, 0xFF, np.uint8)
    cases["runs"] = _runs(rng, 50000)
    cases["more_runs_than_noted"] = np.repeat(rng.integers(0, 256, 30000).astype(np.uint8), 4)
    cases["single_value"] = np.array([42], np.uint8)
    cases["empty"] = np.zeros(0, np.uint8)
    for n in (2, 3, 5, 7, 9, 15, 17, 33):
        cases[f"tiny{n}"] = rng.integers(0, 3, n).astype(np.uint8)
    cases["all_256_values"] = rng.permutation(np.repeat(np.arange(256, dtype=np.uint8), 40))
    cases["uniform"] = rng.integers(0, 256, 65537).astype(np.uint8)
    cases["skewed_past_15_bits"] = _skewed()
    return cases


@pytest.mark.parametrize("name", list(_planes()))
def test_a_piece_inflates_to_its_bytes(name):
    data = _planes()[name]
    piece = codec.deflate_huffman(data)
    inflater = zlib.decompressobj(-15)
    assert inflater.decompress(piece) == data.tobytes()
    # A sync-flushed piece that is not the last block: more pieces may follow.
    assert piece.endswith(_SYNC_FLUSH) and not inflater.eof


def test_the_skewed_case_needs_the_length_limit():
    data = _skewed()
    assert _unlimited_depth(data) > 15
    assert zlib.decompressobj(-15).decompress(codec.deflate_huffman(data)) == data.tobytes()


@pytest.mark.parametrize("mean", [2, 20, 300])
def test_noise_is_no_larger_than_isal_level_1(mean):
    """Huffman codes plus runs reach what LZ77 finds on detector-like noise (within 1%)."""
    rng = np.random.default_rng(mean)
    tile = rng.poisson(mean, (211, 493)).astype(np.int32)
    tile[:, 300:307] = -1  # a masked gap
    plane = codec.shuffle(tile).reshape(4, -1)[0]
    ours = len(codec.deflate_huffman(plane))
    assert ours <= 1.01 * len(codec.encode_segment(plane, 1)[0])
    # And far below the 8 bits a byte of noise would cost stored.
    assert ours < 0.9 * plane.size


def test_a_short_buffer_is_refused_not_overrun():
    data = np.random.default_rng(0).poisson(20, 10000).astype(np.uint8)
    size = len(codec.deflate_huffman(data))
    out = np.full(size + 64, 0xAB, np.uint8)
    c = lib.library()
    assert c.mdx_deflate_huffman(lib.ptr(data), data.size, lib.ptr(out), size + 7) == -1
    assert (out == 0xAB).all()  # nothing written
    assert c.mdx_deflate_huffman(lib.ptr(data), data.size, lib.ptr(out), size + 8) == size
    assert (out[size + 8 :] == 0xAB).all()  # the 8 bytes of slack may be scribbled on


def test_pieces_of_both_coders_join_into_one_chunk_stream():
    """A chunk mixes Huffman pieces (C) and ISA-L pieces (the twin, padding): one zlib stream."""
    rng = np.random.default_rng(7)
    planes = [(rng.poisson(m, 3000) & 255).astype(np.uint8) for m in (1, 20, 200)]
    planes += [np.zeros(3000, np.uint8)]
    pieces = []
    for i, plane in enumerate(planes):
        if i % 2:
            pieces.append(codec.encode_segment(plane, 1))
        else:
            pieces.append((codec.deflate_huffman(plane), zlib.adler32(plane.tobytes()), plane.size))
    stream = codec.join_segments(pieces)
    assert zlib.decompress(stream) == b"".join(p.tobytes() for p in planes)


def test_h5py_reads_a_chunk_written_from_the_pieces(tmp_path):
    """HDF5's own shuffle + deflate filters decode the chunks (as mdx2 and NeXpy read them)."""
    rng = np.random.default_rng(9)
    chunk = rng.poisson(20, (3, 16, 24)).astype(np.int32)
    chunk[:, :, 5:8] = -1
    chunk[1, 4, 4] = 70000  # a byte in the third plane
    planes = codec.shuffle(chunk).reshape(4, 3, -1)
    pieces = [
        (codec.deflate_huffman(planes[k, f]), zlib.adler32(planes[k, f].tobytes()), 16 * 24)
        for k in range(4)
        for f in range(3)
    ]
    path = tmp_path / "chunks.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset(
            "data", (3, 16, 24), np.int32, chunks=(3, 16, 24), shuffle=True, compression="gzip"
        )
        d.id.write_direct_chunk((0, 0, 0), codec.join_segments(pieces))
    with h5py.File(path, "r") as f:
        assert np.array_equal(f["data"][()], chunk)


def test_the_import_writes_these_pieces_at_level_1():
    """encode_tiles (C) at level 1: each tile's plane as deflate_huffman codes it."""
    if not codec.has_c_encoder():
        pytest.skip("built without ISA-L: no C encode_tiles")
    rng = np.random.default_rng(4)
    raw = rng.poisson(20, (40, 70)).astype(np.int32)
    static = np.ones(raw.shape, bool)
    static[:, 30:37] = False
    tiles = np.array([(0, 0), (0, 32), (16, 64)], np.int64)  # the last one past the edge
    pieces, _ = codec.encode_tiles(raw, static, (-1.0, 1e6), (16, 32), tiles, 1)
    masked = np.where(static, raw, -1)
    for (y0, x0), tile_pieces in zip(tiles.tolist(), pieces):
        tile = np.zeros((16, 32), np.int32)
        part = masked[y0 : y0 + 16, x0 : x0 + 32]
        tile[: part.shape[0], : part.shape[1]] = part
        planes = codec.shuffle(tile).reshape(4, -1)
        for k in range(4):
            assert bytes(tile_pieces[k][0]) == codec.deflate_huffman(planes[k])
