"""Chunk codec: HDF5's standard shuffle + deflate filters, done in Python.

We compress chunks ourselves and hand the bytes to HDF5 with
``write_direct_chunk`` so that (a) the fast ISA-L deflate can be used and
(b) several chunks can be compressed at once in threads (ISA-L and zlib
release the GIL). The bytes are exactly what HDF5's own shuffle (filter 2)
and deflate (filter 1) pipeline writes and reads, so any HDF5 reader
(h5py, NeXpy, mdx2, h5dump) decodes the files without plugins.
"""

from __future__ import annotations

import zlib

import numpy as np

try:  # ISA-L: ~5x faster deflate than zlib at level 1, slightly smaller output
    from isal import isal_zlib as _deflate

    DEFLATE_BACKEND = "isal"
except ImportError:  # pragma: no cover - isal is a declared dependency
    _deflate = zlib
    DEFLATE_BACKEND = "zlib"

# ISA-L knows levels 0-3; map HDF5/zlib's 1-9 onto it.
_ISAL_MAX_LEVEL = 3


def shuffle(array: np.ndarray) -> np.ndarray:
    """Byte-shuffle an array as HDF5's shuffle filter does.

    Args:
        array: C-contiguous array of any fixed-size dtype.

    Returns:
        A 1-D uint8 array: byte 0 of every element, then byte 1, and so on.
    """
    itemsize = array.dtype.itemsize
    raw = np.ascontiguousarray(array).view(np.uint8).reshape(-1, itemsize)
    out = np.empty((itemsize, raw.shape[0]), dtype=np.uint8)
    # Row-wise copies are ~30% faster than one transposed copy.
    for k in range(itemsize):
        out[k] = raw[:, k]
    return out.reshape(-1)


def unshuffle(buffer: bytes | np.ndarray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Invert :func:`shuffle`.

    Args:
        buffer: shuffled bytes.
        dtype: element type.
        shape: shape of the result.

    Returns:
        A new C-contiguous array of ``dtype`` and ``shape``.
    """
    dtype = np.dtype(dtype)
    planes = np.frombuffer(buffer, dtype=np.uint8).reshape(dtype.itemsize, -1)
    out = np.empty((planes.shape[1], dtype.itemsize), dtype=np.uint8)
    for k in range(dtype.itemsize):
        out[:, k] = planes[k]
    return out.view(dtype).reshape(shape)


_ADLER_MOD = 65521
# zlib stream header (deflate, 32 KiB window, "fastest" flag): FCHECK makes it a multiple of 31.
_ZLIB_HEADER = b"\x78\x01"
# An empty final block with fixed Huffman codes, as zlib ends a sync-flushed stream.
_FINAL_BLOCK = b"\x03\x00"


def _adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Adler-32 of A+B from those of A and B (zlib's adler32_combine)."""
    rem = len2 % _ADLER_MOD
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_MOD
    sum1 += (adler2 & 0xFFFF) + _ADLER_MOD - 1
    sum2 += ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + _ADLER_MOD - rem
    sum1 %= _ADLER_MOD
    sum2 %= _ADLER_MOD
    return (sum2 << 16) | sum1


def encode_segment(data: np.ndarray | bytes, level: int = 1) -> tuple[bytes, int, int]:
    """Deflate one piece of a stream so pieces can be joined later.

    The piece ends on a byte boundary with a sync flush and no final block,
    so concatenating pieces gives one valid deflate stream (as pigz does).
    This lets a chunk that spans many frames be compressed frame by frame,
    without holding the frames.

    Returns:
        (raw deflate bytes, adler-32 of the data, length of the data).
    """
    buffer = memoryview(np.ascontiguousarray(data)).cast("B")
    compressor = _deflate.compressobj(deflate_level(level), _deflate.DEFLATED, -15)
    payload = compressor.compress(buffer) + compressor.flush(_deflate.Z_SYNC_FLUSH)
    return payload, _deflate.adler32(buffer), buffer.nbytes


def join_segments(segments: list[tuple[bytes, int, int]]) -> bytes:
    """One zlib stream (what HDF5's deflate filter stores) from pieces in order."""
    adler = 1
    for _, piece_adler, length in segments:
        adler = _adler32_combine(adler, piece_adler, length)
    # One join, one copy of the compressed bytes (a chunk of a 16M slab is ~2.5 MB).
    parts = [_ZLIB_HEADER, *(payload for payload, _, _ in segments)]
    parts += [_FINAL_BLOCK, adler.to_bytes(4, "big")]
    return b"".join(parts)


def deflate_level(level: int) -> int:
    """The level actually passed to the deflate backend for an HDF5 gzip level."""
    if DEFLATE_BACKEND == "isal":
        return min(max(level, 0), _ISAL_MAX_LEVEL)
    return level


def encode_chunk(chunk: np.ndarray, level: int = 1, use_shuffle: bool = True) -> bytes:
    """Encode one full chunk the way HDF5's shuffle + deflate filters store it."""
    data = shuffle(chunk) if use_shuffle else np.ascontiguousarray(chunk).view(np.uint8)
    return _deflate.compress(data, deflate_level(level))


def inflate(payload: bytes) -> bytes:
    """Decompress one zlib stream (an HDF5 deflate-filtered chunk)."""
    return _deflate.decompress(payload)


def decode_chunk(
    payload: bytes, dtype: np.dtype, shape: tuple[int, ...], use_shuffle: bool = True
) -> np.ndarray:
    """Decode one chunk stored with HDF5's (shuffle +) deflate filters."""
    return decode_inflated(inflate(payload), dtype, shape, use_shuffle)


def decode_inflated(
    raw: bytes, dtype: np.dtype, shape: tuple[int, ...], use_shuffle: bool = True
) -> np.ndarray:
    """The array of an already inflated chunk (undoing the shuffle filter if used)."""
    if use_shuffle:
        return unshuffle(raw, dtype, shape)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
