"""Per-pixel loops fused into one pass, in C when the extension is built.

Masking a 6M frame with numpy takes several passes (~20 ms); one compiled
pass takes ~5 ms, and can write the HDF5 byte planes (the shuffle filter's
layout) or add straight into the bin sums at the same time. The C code
(``_ckernels.c``) is plain C called through ctypes, which releases the GIL,
so threads run it in parallel. It is built at install time when a C compiler
is there; without it (or with ``DIALS_MDXBG_PURE_NUMPY=1``) the numpy
reference in :mod:`masking`, :mod:`codec` and :mod:`binning` gives the same
bytes. (numba did the same job but cost ~0.3 s and ~95 MB in every run.)
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import threading

import numpy as np

from dials_mdxbg.frames.masking import _integer_bounds, apply_mask
from dials_mdxbg.model import MASKED_VALUE

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_I32 = ctypes.c_int32

_SIGNATURES = {
    "mdx_mask_frame": (_I64, [_P, _P, _I64, _I32, _I32, _P]),
    "mdx_mask_to_planes": (_I64, [_P, _P, _I64, _I32, _I32, _P]),
    "mdx_bin_block": (
        None,
        [_P, _I64, _I64, _I64, _P, _P, _P, _I64, _I64, _I32, _I32, _P, _P, _P],
    ),
    "mdx_bin_raw_frame": (
        _I64,
        [_P, _P, _I64, _I64, _I32, _I32, _I64, _P, _P, _I64, _I64, _I32, _I32, _P, _P, _P],
    ),
    "mdx_have_isal": (ctypes.c_int, []),
    "mdx_have_libdeflate": (ctypes.c_int, []),
    "mdx_unshuffle4_into": (None, [_P, _I64, _I64, _I64, _I64, _I64, _I64, _P, _I64, _I64, _I64]),
}
_DECODE_SIGNATURE = (
    ctypes.c_int,
    [_P, _I64, _P, _I64, _I64, _I64, _I64, _I64, _I64, _P, _I64, _I64, _I64],
)
_ENCODE_SIGNATURE = (
    _I64,
    [_P, _P, _I64, _I64, _I32, _I32, _I64, _I64, _P, _I64, _I32, _P, _I64, _P, _P, _P, _P],
)


@functools.lru_cache(maxsize=None)
def _compiled() -> ctypes.CDLL | None:
    """The C kernels (loaded once), or None to use numpy."""
    if os.environ.get("DIALS_MDXBG_PURE_NUMPY"):
        return None
    spec = importlib.util.find_spec("dials_mdxbg.native._ckernels")
    if spec is None or not spec.origin:
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
        for name, (restype, argtypes) in _SIGNATURES.items():
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes
        if lib.mdx_have_isal():
            lib.mdx_encode_tiles.restype, lib.mdx_encode_tiles.argtypes = _ENCODE_SIGNATURE
        if lib.mdx_have_libdeflate():
            lib.mdx_decode_chunk_into.restype, lib.mdx_decode_chunk_into.argtypes = (
                _DECODE_SIGNATURE
            )
    except (OSError, AttributeError):
        return None
    return lib


def have_compiled_decoder() -> bool:
    """True when binning from a file can inflate in C (built against libdeflate)."""
    lib = _compiled()
    return lib is not None and bool(lib.mdx_have_libdeflate())


def have_compiled_encoder() -> bool:
    """True when import can mask and deflate in C (built against ISA-L)."""
    lib = _compiled()
    return lib is not None and bool(lib.mdx_have_isal())


def have_compiled() -> bool:
    """True when the C kernels are in use."""
    return _compiled() is not None


# Per-thread buffers of encode_tiles and decode_chunk_into, reused call after call.
_scratch = threading.local()


def _ptr(array: np.ndarray) -> int:
    return array.ctypes.data


def _index(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.int64)


def _kernel_ready(raw: np.ndarray, static_valid, extra_valid) -> bool:
    return (
        raw.dtype == np.int32
        and raw.flags.c_contiguous
        and static_valid is not None
        and static_valid.dtype == np.bool_
        and static_valid.flags.c_contiguous
        and static_valid.shape == raw.shape
        and extra_valid is None
        and _compiled() is not None
    )


def _valid_bounds(valid_range: tuple[int, int] | None) -> tuple[int, int]:
    info = np.iinfo(np.int32)
    lo, hi = valid_range if valid_range is not None else (info.min, info.max)
    return max(int(lo), info.min), min(int(hi), info.max)


def mask_frame(
    raw: np.ndarray,
    static_valid: np.ndarray | None,
    trusted_range: tuple[float, float],
    extra_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Same result as :func:`dials_mdxbg.masking.apply_mask`, faster."""
    if not _kernel_ready(raw, static_valid, extra_valid):
        return apply_mask(raw, static_valid, trusted_range, extra_valid)
    lo, hi = _integer_bounds(trusted_range, raw.dtype)
    out = np.empty(raw.shape, dtype=np.int32)
    n_dynamic = _compiled().mdx_mask_frame(
        _ptr(raw), _ptr(static_valid), raw.size, lo, hi, _ptr(out)
    )
    return out, int(n_dynamic)


def mask_to_planes(
    raw: np.ndarray,
    static_valid: np.ndarray | None,
    trusted_range: tuple[float, float],
    extra_valid: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Mask a frame and return it as HDF5 shuffle byte planes, shape (4, ny, nx) uint8.

    ``planes[k, y, x]`` is byte ``k`` (little-endian) of the masked int32
    value, so a chunk's shuffled bytes are its tiles' planes in order.
    ``out`` (uint8, (4, ny, nx), C-contiguous) is reused when given: a fresh
    25 MB array per 6M frame would otherwise churn the allocator.
    """
    planes = out if out is not None else np.empty((4, *raw.shape), dtype=np.uint8)
    if not _kernel_ready(raw, static_valid, extra_valid) or not planes.flags.c_contiguous:
        masked, n_dynamic = apply_mask(raw, static_valid, trusted_range, extra_valid)
        as_bytes = masked.astype("<i4", copy=False).view(np.uint8).reshape(*masked.shape, 4)
        for k in range(4):
            planes[k] = as_bytes[:, :, k]
        return planes, n_dynamic
    lo, hi = _integer_bounds(trusted_range, raw.dtype)
    n_dynamic = _compiled().mdx_mask_to_planes(
        _ptr(raw), _ptr(static_valid), raw.size, lo, hi, _ptr(planes)
    )
    return planes, int(n_dynamic)


def unshuffle_int32(raw: bytes, shape: tuple[int, ...]) -> np.ndarray | None:
    """Compiled inverse of the HDF5 shuffle for int32, or None without the C kernels."""
    lib = _compiled()
    n = int(np.prod(shape))
    if lib is None or len(raw) != 4 * n:
        return None
    out = np.empty((1, 1, n), dtype=np.int32)
    unshuffle_into(raw, (1, 1, n), out, 0)  # the whole chunk as one row
    return out.reshape(shape)


def _check_into(chunk_shape, out: np.ndarray, x0: int) -> tuple[int, int, int] | None:
    """(frames, rows, columns) of a chunk that land in ``out`` at column ``x0``, if valid."""
    cf, cy, cx = chunk_shape
    nf, rows, nx = out.shape
    if out.dtype != np.int32 or not out.flags.c_contiguous or nf > cf or rows > cy:
        return None
    if not 0 <= x0 < nx:
        return None
    return nf, rows, min(cx, nx - x0)


def unshuffle_into(raw: bytes, chunk_shape: tuple[int, int, int], out: np.ndarray, x0: int) -> bool:
    """Unshuffle an inflated int32 chunk straight into a block at column ``x0``.

    ``out`` (nf, rows, nx) receives the chunk's first nf frames and rows.
    Returns False (nothing written) without the C kernels.
    """
    lib = _compiled()
    extent = _check_into(chunk_shape, out, x0)
    if lib is None or extent is None or len(raw) != 4 * int(np.prod(chunk_shape)):
        return False
    planes = np.frombuffer(raw, dtype=np.uint8)
    lib.mdx_unshuffle4_into(_ptr(planes), *chunk_shape, *extent, _ptr(out), *out.shape[1:], x0)
    return True


def decode_chunk_into(
    payload: bytes, chunk_shape: tuple[int, int, int], out: np.ndarray, x0: int
) -> bool:
    """Inflate (libdeflate) and unshuffle a stored chunk straight into a block.

    Like :func:`unshuffle_into` on ``zlib.decompress(payload)``, in C without
    the GIL. Returns False (nothing written) without libdeflate, or if the
    payload is not a shuffled int32 chunk of ``chunk_shape``.
    """
    lib = _compiled()
    extent = _check_into(chunk_shape, out, x0)
    if extent is None or not have_compiled_decoder():
        return False
    size = 4 * int(np.prod(chunk_shape))
    scratch = getattr(_scratch, "inflated", None)
    if scratch is None or scratch.size < size:
        scratch = _scratch.inflated = np.empty(size, dtype=np.uint8)
    source = np.frombuffer(payload, dtype=np.uint8)
    status = lib.mdx_decode_chunk_into(
        _ptr(source), source.size, _ptr(scratch), *chunk_shape, *extent, _ptr(out),
        *out.shape[1:], x0,
    )  # fmt: skip
    return status == 0


def bin_block(block, f_bins, y_bins, x_edges, valid_range, total, count, total_sq) -> bool:
    """Add a block's valid counts into the bin sums in one pass; False without C kernels.

    Integer sums, so the result is the same as the numpy path to the last bit.
    """
    lib = _compiled()
    if lib is None or block.dtype != np.int32 or not block.flags.c_contiguous:
        return False
    nf, rows, nx = block.shape
    f_bins, y_bins, x_edges = _index(f_bins), _index(y_bins), _index(x_edges)
    vlo, vhi = _valid_bounds(valid_range)
    lib.mdx_bin_block(
        _ptr(block), nf, rows, nx, _ptr(f_bins), _ptr(y_bins), _ptr(x_edges),
        total.shape[1], total.shape[2], vlo, vhi, _ptr(total), _ptr(count), _ptr(total_sq),
    )  # fmt: skip
    return True


def bin_raw_frame(
    raw: np.ndarray,
    static_valid: np.ndarray,
    trusted_range: tuple[float, float],
    f_bin: int,
    y_bins: np.ndarray,
    x_edges: np.ndarray,
    valid_range: tuple[int, int] | None,
    total: np.ndarray,
    count: np.ndarray,
    total_sq: np.ndarray,
) -> int | None:
    """Mask one raw frame and add it into the bin sums in one pass.

    The same sums as :func:`mask_frame` then :func:`bin_block` (masked
    pixels are -1 and never binned), without writing the 25 MB masked frame.

    Returns:
        Pixels masked by the trusted range, or None (nothing done) without
        the C kernels or for non-int32 data: the caller takes the two-step path.
    """
    if not _kernel_ready(raw, static_valid, None):
        return None
    ny, nx = raw.shape
    lo, hi = _integer_bounds(trusted_range, raw.dtype)
    vlo, vhi = _valid_bounds(valid_range)
    y_bins, x_edges = _index(y_bins), _index(x_edges)
    n_dynamic = _compiled().mdx_bin_raw_frame(
        _ptr(raw), _ptr(static_valid), ny, nx, lo, hi, int(f_bin), _ptr(y_bins), _ptr(x_edges),
        total.shape[1], total.shape[2], vlo, vhi, _ptr(total), _ptr(count), _ptr(total_sq),
    )  # fmt: skip
    return int(n_dynamic) if n_dynamic >= 0 else None  # -1: out of memory, nothing added


def encode_tiles(
    raw: np.ndarray,
    static_valid: np.ndarray,
    trusted_range: tuple[float, float],
    chunk_yx: tuple[int, int],
    tiles: np.ndarray,
    level: int,
) -> tuple[list[list[tuple[memoryview, int, int]]], int] | None:
    """Mask a raw frame and deflate its tiles' byte planes, in C without the GIL.

    The same pieces as :func:`mask_to_planes` then
    :func:`dials_mdxbg.codec.encode_segment` on each tile's four planes
    (zero-padded to the full chunk at the frame edges).

    Args:
        raw: int32 frame (ny, nx).
        static_valid: True where valid in every frame.
        trusted_range: the panel's (min, max), exclusive.
        chunk_yx: chunk rows and columns.
        tiles: int64 array (n, 2) of tile origins (y0, x0).
        level: ISA-L deflate level (0-3).

    Returns:
        ``(pieces, n_dynamic)``: per tile, its four ``(payload, adler32, length)``
        pieces; or None if the C encoder cannot be used for this frame.
    """
    if not have_compiled_encoder() or not _kernel_ready(raw, static_valid, None):
        return None
    ny, nx = raw.shape
    cy, cx = chunk_yx
    tiles = np.ascontiguousarray(tiles, dtype=np.int64)
    n_pieces = 4 * len(tiles)
    # Deflate never grows data by more than ~0.1% plus a few bytes per piece.
    capacity = n_pieces * (cy * cx + (cy * cx >> 3) + 256)
    out = getattr(_scratch, "out", None)
    if out is None or out.size < capacity:
        out = _scratch.out = np.empty(capacity, dtype=np.uint8)
    offsets = np.empty(n_pieces, dtype=np.int64)
    lengths = np.empty(n_pieces, dtype=np.int64)
    adlers = np.empty(n_pieces, dtype=np.uint32)
    n_dynamic = np.zeros(1, dtype=np.int64)
    lo, hi = _integer_bounds(trusted_range, raw.dtype)
    used = _compiled().mdx_encode_tiles(
        _ptr(raw), _ptr(static_valid), ny, nx, lo, hi, cy, cx, _ptr(tiles), len(tiles), level,
        _ptr(out), out.size, _ptr(offsets), _ptr(lengths), _ptr(adlers), _ptr(n_dynamic),
    )  # fmt: skip
    if used < 0:
        return None
    # One copy of the compressed bytes; the pieces are views of it.
    payload = memoryview(out[:used].tobytes())
    pieces = [
        (payload[o : o + n], a, cy * cx)
        for o, n, a in zip(offsets.tolist(), lengths.tolist(), adlers.tolist())
    ]
    return [pieces[i : i + 4] for i in range(0, n_pieces, 4)], int(n_dynamic[0])


__all__ = [
    "MASKED_VALUE",
    "bin_block",
    "bin_raw_frame",
    "decode_chunk_into",
    "encode_tiles",
    "have_compiled",
    "have_compiled_decoder",
    "have_compiled_encoder",
    "mask_frame",
    "mask_to_planes",
    "unshuffle_int32",
    "unshuffle_into",
]
