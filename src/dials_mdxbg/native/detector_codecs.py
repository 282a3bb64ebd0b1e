"""Detector image codecs: bitshuffle/LZ4 (Eiger, HDF5 filter 32008) and CBF byte offset.

Each function runs its C kernel when the library has it (liblz4 for
bitshuffle/LZ4), else its numpy twin here; both give the same values.
"""

from __future__ import annotations

import numpy as np

from dials_mdxbg.native import lib

#: Errors of mdx_bslz4_decode / mdx_bslz4_bin_frame (negative returns).
BSLZ4_ERRORS = {
    -1: "truncated chunk",
    -2: "chunk size does not match the frame",
    -3: "corrupt LZ4 block",
    -4: "out of memory",
}


def bslz4_error(status: int) -> ValueError:
    """The error of a failed C decode (a negative or short ``status``)."""
    return ValueError(f"bitshuffle/LZ4 chunk: {BSLZ4_ERRORS.get(status, status)}")


def has_c_bslz4() -> bool:
    """True when bitshuffle/LZ4 chunks decode in C (liblz4), without the GIL."""
    return lib.has("bslz4")


def set_bslz4_simd(enabled: bool) -> None:
    """Allow (default) or forbid the AVX2 transpose (tests compare both)."""
    if has_c_bslz4():
        lib.library().mdx_bslz4_set_simd(int(bool(enabled)))


def bslz4_decode(
    chunk: bytes, shape: tuple[int, ...], dtype, out: np.ndarray | None = None
) -> np.ndarray:
    """Decode one bitshuffle/LZ4 chunk (HDF5 filter 32008, as hdf5plugin writes it).

    Layout: uint64 BE uncompressed bytes, uint32 BE block bytes, then per block
    a uint32 BE compressed size and an LZ4 block of the bit-transposed block
    (8E bit planes of n/8 bytes for n elements of E bytes); full blocks, then
    the rest rounded down to 8 elements, then the last n % 8 elements as stored.

    Args:
        chunk: the stored chunk (``read_direct_chunk``'s bytes).
        shape: its shape; dtype: its element type.
        out: C-contiguous array of that shape and dtype to decode into.

    Raises:
        ValueError: not a bitshuffle/LZ4 chunk of that shape.
    """
    dtype = np.dtype(dtype)
    if not has_c_bslz4():
        return bslz4_decode_numpy(chunk, shape, dtype, out)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError("bslz4_decode: out does not match the chunk")
    source = np.frombuffer(chunk, dtype=np.uint8)
    status = lib.library().mdx_bslz4_decode(
        lib.ptr(source), source.size, lib.ptr(out), out.nbytes, dtype.itemsize
    )
    if status != out.nbytes:
        raise bslz4_error(status)
    return out


def bslz4_decode_numpy(chunk, shape, dtype, out=None) -> np.ndarray:
    """The numpy twin of :func:`bslz4_decode` (needs the lz4 package)."""
    try:
        import lz4.block
    except ImportError:
        raise ValueError("bitshuffle/LZ4 chunk: the lz4 package is needed") from None
    dtype = np.dtype(dtype)
    e = dtype.itemsize
    n = int(np.prod(shape))
    data = memoryview(chunk)
    if len(data) < 12:
        raise bslz4_error(-1)
    nbytes = int.from_bytes(data[:8], "big")
    block = int.from_bytes(data[8:12], "big") // e
    if nbytes != n * e or block == 0 or block % 8:
        raise bslz4_error(-2)
    result = np.empty(n * e, dtype=np.uint8)
    pos, done = 12, 0
    while n - done >= 8:
        m = min(block, (n - done) // 8 * 8)
        size = int.from_bytes(data[pos : pos + 4], "big")
        try:
            raw = lz4.block.decompress(data[pos + 4 : pos + 4 + size], uncompressed_size=m * e)
        except lz4.block.LZ4BlockError:
            raise bslz4_error(-3) from None
        pos += 4 + size
        # Bit plane 8j + i holds bit i of byte j of every element.
        planes = np.frombuffer(raw, dtype=np.uint8).reshape(8 * e, m // 8)
        bits = np.unpackbits(planes, axis=1, bitorder="little").reshape(e, 8, m)
        elems = np.packbits(bits.transpose(2, 0, 1), axis=2, bitorder="little")
        result[done * e : (done + m) * e] = elems.reshape(-1)
        done += m
    tail = (n - done) * e
    if len(data) - pos < tail:
        raise bslz4_error(-1)
    result[done * e :] = np.frombuffer(data[pos : pos + tail], dtype=np.uint8)
    decoded = result.view(dtype).reshape(shape)
    if out is None:
        return decoded
    out[...] = decoded
    return out


def bslz4_decode_rows(
    chunk: bytes, shape: tuple[int, int], row0: int, out: np.ndarray
) -> np.ndarray:
    """Rows ``row0 .. row0 + len(out)`` of a 4-byte bitshuffle/LZ4 chunk of ``shape``.

    The same values as :func:`bslz4_decode` then slicing, from only the blocks
    that hold those rows (an import thread's band of a 16M frame is 9 MB, the
    frame 72 MB). ``out``: C-contiguous (rows, nx) array of the chunk's dtype;
    rows past the frame are left as they are.

    Returns:
        The decoded rows: ``out`` up to the frame's last row.

    Raises:
        ValueError: not a bitshuffle/LZ4 chunk of that shape.
    """
    ny, nx = shape
    if not has_c_bslz4():
        return bslz4_decode_rows_numpy(chunk, shape, row0, out)
    if out.ndim != 2 or out.shape[1] != nx or not out.flags.c_contiguous or row0 >= ny:
        raise ValueError("bslz4_decode_rows: out does not match the chunk")
    rows = min(out.shape[0], ny - row0)
    source = np.frombuffer(chunk, dtype=np.uint8)
    status = lib.library().mdx_bslz4_decode_range(
        lib.ptr(source), source.size, lib.ptr(out), out.itemsize, row0 * nx, rows * nx
    )
    if status != rows * nx:
        raise bslz4_error(status)
    return out[:rows]


def bslz4_decode_rows_numpy(chunk, shape, row0: int, out: np.ndarray) -> np.ndarray:
    """The numpy twin of :func:`bslz4_decode_rows`: the whole frame, then its rows."""
    rows = min(out.shape[0], shape[0] - row0)
    frame = bslz4_decode_numpy(chunk, shape, out.dtype)
    out[:rows] = frame[row0 : row0 + rows]
    return out[:rows]


def flag_top(values: np.ndarray, top: int) -> None:
    """In place: ``top - 1`` -> -1, ``top - 2`` -> -2 (FormatNXmx's bit-depth flags)."""
    c = lib.library()
    if c is not None and lib.takes_block(values) and values.flags.writeable:
        c.mdx_flag_top(lib.ptr(values), values.size, int(top))
        return
    high = values == top - 1
    values[values == top - 2] = -2
    values[high] = -1


def cbf_byte_offset(
    packed: bytes | memoryview, shape: tuple[int, int], out: np.ndarray | None = None
) -> np.ndarray:
    """Decompress a CBF byte-offset array into int32 ``shape``, as dxtbx does.

    dxtbx's ``uncompress``: deltas of one byte, or after 0x80 two, or after
    0x8000 four (no 8-byte step), little-endian, summed with 32-bit wrap-around;
    decoding stops when the frame is full, so bytes past it are ignored.

    Args:
        packed: the binary section (X-Binary-Size bytes after the start tag).
        shape: (slow, fast) of the frame.
        out: C-contiguous int32 array of ``shape`` to decode into.

    Raises:
        ValueError: the data end before the frame is full.
    """
    c = lib.library()
    if c is None:
        return cbf_byte_offset_numpy(packed, shape, out)
    if out is None:
        out = np.empty(shape, dtype=np.int32)
    elif out.shape != tuple(shape) or out.dtype != np.int32 or not out.flags.c_contiguous:
        raise ValueError("cbf_byte_offset: out does not match the frame")
    source = np.frombuffer(packed, dtype=np.uint8)
    done = c.mdx_cbf_byte_offset(lib.ptr(source), source.size, lib.ptr(out), out.size)
    if done != out.size:
        raise ValueError("CBF byte-offset data end before the frame is full")
    return out


def cbf_byte_offset_numpy(packed, shape, out=None) -> np.ndarray:
    """The numpy twin of :func:`cbf_byte_offset`."""
    b = np.frombuffer(packed, dtype=np.uint8)
    n = int(np.prod(shape))
    start = np.ones(b.size, dtype=bool)  # bytes that begin a delta
    wide = []  # (position of the 0x80 marker, bytes of its delta)
    end = b.size
    skip = 0
    for p in np.flatnonzero(b == 0x80).tolist():
        if p < skip:
            continue  # a byte of an earlier wide delta
        if p + 2 >= b.size:
            end = p
            break
        width = 4 if b[p + 1] == 0x00 and b[p + 2] == 0x80 else 2
        if width == 4 and p + 6 >= b.size:
            end = p
            break
        wide.append((p, width))
        skip = p + 1 + width + (2 if width == 4 else 0)
        start[p + 1 : skip] = False
    starts = np.flatnonzero(start[:end])[:n]
    if starts.size < n:
        raise ValueError("CBF byte-offset data end before the frame is full")
    deltas = b.view(np.int8).astype(np.int64)
    for p, width in wide:
        if width == 2:
            deltas[p] = int.from_bytes(b[p + 1 : p + 3].tobytes(), "little", signed=True)
        else:
            deltas[p] = int.from_bytes(b[p + 3 : p + 7].tobytes(), "little", signed=True)
    values = np.cumsum(deltas[starts]).astype(np.int32).reshape(shape)  # wraps as int32
    if out is None:
        return values
    out[...] = values
    return out
