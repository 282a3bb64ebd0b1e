"""HDF5's shuffle + deflate chunk codec: Python (zlib/ISA-L) beside the C kernels.

We compress chunks ourselves and hand the bytes to HDF5 with
``write_direct_chunk`` so that (a) a faster deflate than zlib's can be used
(in C at level 1 a Huffman-only coder with runs, :func:`deflate_huffman`;
else ISA-L) and (b) several chunks can be compressed at once in threads
(the C kernels, ISA-L and zlib release the GIL). The bytes are exactly what
HDF5's own shuffle (filter 2) and deflate (filter 1) pipeline reads, so any HDF5 reader
(h5py, NeXpy, mdx2, h5dump) decodes the files without plugins.

:func:`encode_tiles` (mask and deflate a frame's tiles), :func:`unshuffle_into`
and :func:`decode_chunk_into` run in C when the library has them and the
input fits, else their numpy twins here.
"""

from __future__ import annotations

import zlib
from typing import Union

import numpy as np

from dials_mdxbg.native import lib
from dials_mdxbg.native.mask_kernels import integer_bounds, mask_to_planes

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


def deflate_huffman(data: np.ndarray | bytes) -> bytes:
    """The payload of :func:`encode_segment` at level 1, as the C import path writes it.

    In C: one dynamic-Huffman block of the bytes and of their runs (distance-1
    matches), sync-flushed; without the library, or if it declines, ISA-L's
    (or zlib's) level 1: other bytes, the same data once inflated.
    """
    buffer = np.frombuffer(memoryview(np.ascontiguousarray(data)).cast("B"), dtype=np.uint8)
    if lib.loaded():
        out = lib.scratch("huffman", buffer.size + (buffer.size >> 3) + 1024)
        used = lib.library().mdx_deflate_huffman(
            lib.ptr(buffer), buffer.size, lib.ptr(out), out.size
        )
        if used >= 0:
            return out[:used].tobytes()
    return encode_segment(buffer, 1)[0]


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


# --------------------------------------------------------------------------- kernels

# One deflate piece: (raw deflate bytes, adler-32 of the data, length of the data).
Piece = tuple[Union[bytes, memoryview], int, int]


def has_c_encoder() -> bool:
    """True when :func:`encode_tiles` deflates in C (level 1: Huffman codes, else ISA-L)."""
    return lib.has("encoder") and DEFLATE_BACKEND == "isal"


def encode_tiles(
    raw: np.ndarray,
    static_valid: np.ndarray | None,
    trusted_range: tuple[float, float],
    chunk_yx: tuple[int, int],
    tiles: np.ndarray,
    level: int,
    extra_valid: np.ndarray | None = None,
) -> tuple[list[list[Piece]], int]:
    """Mask a raw frame and deflate its tiles' byte planes as chunk pieces.

    Each tile is the (cy, cx) window at its origin, zero-padded past the
    frame edge as HDF5 pads edge chunks; each of its four byte planes is
    deflated as in :func:`encode_segment`.

    Args:
        raw: frame (ny, nx).
        static_valid: True where valid in every frame.
        trusted_range: the panel's (min, max), exclusive.
        chunk_yx: chunk rows and columns.
        tiles: int64 array (n, 2) of tile origins (y0, x0).
        level: HDF5 gzip level.
        extra_valid: optional per-frame validity (goniometer shadow).

    Returns:
        ``(pieces, n_dynamic)``: per tile its four ``(payload, adler32,
        length)`` pieces, and the pixels masked beyond the static mask.
    """
    args = (raw, static_valid, trusted_range, chunk_yx, tiles, level, extra_valid)
    if not (has_c_encoder() and lib.takes_frame(raw, static_valid, extra_valid)):
        return encode_tiles_numpy(*args)
    ny, nx = raw.shape
    cy, cx = chunk_yx
    tiles = lib.index(tiles).reshape(-1, 2)
    n_pieces = 4 * len(tiles)
    # Deflate never grows data by more than ~0.1% plus a few bytes per piece.
    out = lib.scratch("encoded", n_pieces * (cy * cx + (cy * cx >> 3) + 256))
    offsets = np.empty(n_pieces, dtype=np.int64)
    lengths = np.empty(n_pieces, dtype=np.int64)
    adlers = np.empty(n_pieces, dtype=np.uint32)
    n_dynamic = np.zeros(1, dtype=np.int64)
    lo, hi = integer_bounds(trusted_range, raw.dtype)
    p = lib.ptr
    used = lib.library().mdx_encode_tiles(
        p(raw), p(static_valid), ny, nx, lo, hi, cy, cx, p(tiles), len(tiles),
        deflate_level(level), p(out), out.size, p(offsets), p(lengths), p(adlers), p(n_dynamic),
    )  # fmt: skip
    if used < 0:  # out of room (or a deflate error): the twin, same data
        return encode_tiles_numpy(*args)
    # One copy of the compressed bytes; the pieces are views of it.
    payload = memoryview(out[:used].tobytes())
    pieces = [
        (payload[o : o + n], a, cy * cx)
        for o, n, a in zip(offsets.tolist(), lengths.tolist(), adlers.tolist())
    ]
    return [pieces[i : i + 4] for i in range(0, n_pieces, 4)], int(n_dynamic[0])


def encode_tiles_numpy(
    raw, static_valid, trusted_range, chunk_yx, tiles, level, extra_valid=None
) -> tuple[list[list[Piece]], int]:
    """The twin of :func:`encode_tiles`: planes (masked in C when it can), deflated here."""
    cy, cx = chunk_yx
    pieces, n_dynamic = [], 0
    for y0, x0 in np.asarray(tiles).reshape(-1, 2).tolist():
        window = (slice(y0, y0 + cy), slice(x0, x0 + cx))
        planes, n = mask_to_planes(
            raw[window],
            None if static_valid is None else static_valid[window],
            trusted_range,
            None if extra_valid is None else extra_valid[window],
        )
        if planes.shape[1:] != (cy, cx):
            # HDF5 stores edge chunks at full size: zero padding, as in C.
            full = np.zeros((4, cy, cx), dtype=np.uint8)
            full[:, : planes.shape[1], : planes.shape[2]] = planes
            planes = full
        pieces.append([encode_segment(planes[k], level) for k in range(4)])
        n_dynamic += n
    return pieces, n_dynamic


def _extent(chunk_shape, out: np.ndarray, x0: int) -> tuple[int, int, int]:
    """(frames, rows, columns) of a chunk that land in ``out`` at column ``x0``."""
    cf, cy, cx = chunk_shape
    nf, rows, nx = out.shape
    if nf > cf or rows > cy or not 0 <= x0 < nx:
        raise ValueError(f"a block {out.shape} at column {x0} is not inside a chunk {chunk_shape}")
    return nf, rows, min(cx, nx - x0)


def unshuffle_into(
    inflated: bytes | np.ndarray,
    chunk_shape: tuple[int, int, int],
    out: np.ndarray,
    x0: int,
    first: int = 0,
) -> None:
    """Unshuffle an inflated int32 chunk into a block at column ``x0``.

    ``out`` (nf, rows, nx) receives the chunk's frames ``first .. first + nf``,
    its first rows and its columns up to ``nx``. Raises ValueError if the
    bytes are not such a chunk.
    """
    nf, rows, cols = _extent(chunk_shape, out, x0)
    cf, cy, cx = chunk_shape
    if first < 0 or first + nf > cf:
        raise ValueError(f"frames {first}..{first + nf} are not inside a chunk {chunk_shape}")
    c = lib.library()
    planes = np.frombuffer(inflated, dtype=np.uint8)
    if c is None or not lib.takes_block(out) or planes.size != 4 * cf * cy * cx:
        chunk = unshuffle(inflated, np.int32, chunk_shape)
        out[:, :, x0 : x0 + cols] = chunk[first : first + nf, :rows, :cols]
        return
    # Each byte plane seen from frame ``first`` on: the planes stay cf*cy*cx apart.
    start = lib.ptr(planes) + first * cy * cx
    c.mdx_unshuffle4_into(start, cf, cy, cx, nf, rows, cols, lib.ptr(out), *out.shape[1:], x0)


def decode_chunk_into(
    payload: bytes,
    chunk_shape: tuple[int, int, int],
    out: np.ndarray,
    x0: int,
    shuffled: bool = True,
) -> None:
    """Inflate a stored int32 chunk (deflate, optionally shuffle) into a block.

    As :func:`unshuffle_into` on ``inflate(payload)`` (or a plain copy when not
    ``shuffled``). Raises (nothing written) if the payload is not such a chunk.
    """
    if shuffled and lib.has("decoder") and lib.takes_block(out):
        extent = _extent(chunk_shape, out, x0)
        buffer = lib.scratch("inflated", 4 * int(np.prod(chunk_shape)))
        source = np.frombuffer(payload, dtype=np.uint8)
        status = lib.library().mdx_decode_chunk_into(
            lib.ptr(source), source.size, lib.ptr(buffer), *chunk_shape, *extent, lib.ptr(out),
            *out.shape[1:], x0,
        )  # fmt: skip
        if status == 0:
            return
    # No libdeflate, or a stream it refused: inflate in Python, unshuffle (in C if it can).
    inflated = inflate(payload)
    if shuffled:
        unshuffle_into(inflated, chunk_shape, out, x0)
        return
    nf, rows, cols = _extent(chunk_shape, out, x0)
    chunk = np.frombuffer(inflated, dtype=np.int32).reshape(chunk_shape)
    out[:, :, x0 : x0 + cols] = chunk[:nf, :rows, :cols]


def inflate_into(payload: bytes, out: np.ndarray) -> None:
    """Inflate a zlib stream of exactly ``out.size`` bytes into the uint8 array ``out``.

    In C (libdeflate, without the GIL) when the library has it, else
    :func:`inflate` and a copy. Raises (ValueError, zlib.error) if the stream
    is not that many bytes of deflate.
    """
    if lib.has("decoder"):
        source = np.frombuffer(payload, dtype=np.uint8)
        status = lib.library().mdx_inflate(lib.ptr(source), source.size, lib.ptr(out), out.size)
        if status == 0:
            return
    inflated = inflate(payload)  # the twin; also says why a stream is refused
    if len(inflated) != out.size:
        raise ValueError(f"a chunk inflates to {len(inflated)} bytes, not {out.size}")
    out[:] = np.frombuffer(inflated, dtype=np.uint8)
