"""The per-pixel kernels behind one interface: C through ctypes, or the numpy reference.

:func:`backend` picks the implementation once per process:

- :class:`NumpyBackend`, the reference, built from the numpy code of
  :mod:`dials_mdxbg.frames.masking`, :mod:`dials_mdxbg.encode.codec` and
  :mod:`dials_mdxbg.binning.sums`; used with ``DIALS_MDXBG_PURE_NUMPY=1`` or
  when the C library was not built.
- :class:`CompiledBackend`, the C kernels of ``_ckernels.c`` (declared in
  ``mdxbg_kernels.h``), each fusing several numpy passes into one: masking a
  6M frame takes ~5 ms instead of ~20 ms, and can write the HDF5 byte planes,
  deflate the tiles (ISA-L) or add into the bin sums in the same pass.
  ctypes releases the GIL for every call, so threads run them in parallel,
  and they cost nothing at start-up (numba did the same job but cost ~0.3 s
  and ~95 MB in every run).

One convention for every method: it always does its job and returns its
result (methods named ``*_into`` and ``bin_*`` write into the caller's arrays).
Where a C kernel cannot take an input (float data, a shadow mask, a
non-contiguous array, a full output buffer), :class:`CompiledBackend` hands
it to the numpy reference itself, so callers never branch on the backend.
Both give the same bytes (tests/test_numerics.py, tests/test_native.py).

To add a kernel: declare it in ``mdxbg_kernels.h`` and define it in
``_ckernels.c``; add the same prototype to :data:`PROTOTYPES`; add an abstract
method to :class:`Backend`, its numpy reference to :class:`NumpyBackend` and
the ctypes call to :class:`CompiledBackend` (``super()`` for inputs it cannot
take); test both through the ``kernel_path`` fixture.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import threading
from abc import ABC, abstractmethod
from typing import Union

import numpy as np

from dials_mdxbg.encode import codec
from dials_mdxbg.frames import masking

# One deflate piece: (raw deflate bytes, adler-32 of the data, length of the data).
Piece = tuple[Union[bytes, memoryview], int, int]

_P = ctypes.c_void_p  # every pointer: numpy arrays are passed by address
_I64 = ctypes.c_int64
_I32 = ctypes.c_int32
_U32 = ctypes.c_uint32
_INT = ctypes.c_int

#: The ctypes prototypes of mdxbg_kernels.h (name: (return type, argument types)),
#: the only place Python declares them; tests/test_native.py checks them against the header.
PROTOTYPES: dict[str, tuple[type | None, tuple[type, ...]]] = {
    "mdx_mask_frame": (_I64, (_P, _P, _I64, _I32, _I32, _P)),
    "mdx_mask_to_planes": (_I64, (_P, _P, _I64, _I32, _I32, _P)),
    "mdx_unshuffle4_into": (None, (_P, _I64, _I64, _I64, _I64, _I64, _I64, _P, _I64, _I64, _I64)),
    "mdx_have_libdeflate": (_INT, ()),
    "mdx_decode_chunk_into": (
        _INT,
        (_P, _I64, _P, _I64, _I64, _I64, _I64, _I64, _I64, _P, _I64, _I64, _I64),
    ),
    "mdx_bin_block": (
        None,
        (_P, _I64, _I64, _I64, _P, _P, _P, _I64, _I64, _I32, _I32, _P, _P, _P),
    ),
    "mdx_bin_raw_frame": (
        _I64,
        (_P, _P, _I64, _I64, _I32, _I32, _I64, _P, _P, _I64, _I64, _I32, _I32, _P, _P, _P),
    ),
    "mdx_have_isal": (_INT, ()),
    "mdx_encode_tiles": (
        _I64,
        (_P, _P, _I64, _I64, _I32, _I32, _I64, _I64, _P, _I64, _I32, _P, _I64, _P, _P, _P, _P),
    ),
    "mdx_flag_top": (None, (_P, _I64, _I64)),
    "mdx_cbf_byte_offset": (_I64, (_P, _I64, _P, _I64)),
    "mdx_have_lz4": (_INT, ()),
    "mdx_bslz4_decode": (_I64, (_P, _I64, _P, _I64, _I64)),
    "mdx_bslz4_decode_range": (_I64, (_P, _I64, _P, _I64, _I64, _I64)),
    "mdx_bslz4_set_simd": (None, (_INT,)),
    "mdx_bslz4_bin_frame": (
        _I64,
        (_P, _I64, _I64, _P, _I64, _I64, _I32, _I32, _I64, _P, _P, _I64, _I64, _I32, _I32, _P,
         _P, _P),
    ),  # fmt: skip
    "mdx_cell_moments": (_INT, (_P, _I64, _I64, _P, _I32, _I32, _I64, *(_P,) * 9)),
    "mdx_score_cells": (None, (_P, _P, _I64, _I64, _I64, _I64, ctypes.c_double, _P)),
}

#: Kernels built only with an optional library, and the function that says whether they were.
OPTIONAL = {
    "mdx_encode_tiles": "mdx_have_isal",
    "mdx_decode_chunk_into": "mdx_have_libdeflate",
    "mdx_bslz4_decode": "mdx_have_lz4",
    "mdx_bslz4_decode_range": "mdx_have_lz4",
    "mdx_bslz4_set_simd": "mdx_have_lz4",
    "mdx_bslz4_bin_frame": "mdx_have_lz4",
}

#: Errors of mdx_bslz4_decode / mdx_bslz4_bin_frame (negative returns).
BSLZ4_ERRORS = {
    -1: "truncated chunk",
    -2: "chunk size does not match the frame",
    -3: "corrupt LZ4 block",
    -4: "out of memory",
}


class Backend(ABC):
    """The kernels' interface. Arrays in, results out; integer sums are exact.

    Attributes:
        name: "compiled" or "numpy".
        has_encoder: :meth:`encode_tiles` masks and deflates in C (ISA-L).
        has_decoder: :meth:`decode_chunk_into` inflates in C (libdeflate).
        has_bslz4: :meth:`bslz4_decode` and :meth:`bslz4_bin_frame` run in C (liblz4),
            without the GIL; the NXmx reader then decodes chunks itself.
    """

    name: str = ""
    has_encoder: bool = False
    has_decoder: bool = False
    has_bslz4: bool = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(encoder={self.has_encoder}, decoder={self.has_decoder}, "
            f"bslz4={self.has_bslz4})"
        )

    @abstractmethod
    def mask_frame(
        self,
        raw: np.ndarray,
        static_valid: np.ndarray | None,
        trusted_range: tuple[float, float],
        extra_valid: np.ndarray | None = None,
    ) -> tuple[np.ndarray, int]:
        """Mask a frame as dxtbx does (see :func:`dials_mdxbg.frames.masking.apply_mask`).

        Returns:
            The int32 frame (-1 where masked) and the pixels the trusted range
            (and ``extra_valid``, e.g. a goniometer shadow) masked beyond the static mask.
        """

    @abstractmethod
    def mask_to_planes(
        self,
        raw: np.ndarray,
        static_valid: np.ndarray | None,
        trusted_range: tuple[float, float],
        extra_valid: np.ndarray | None = None,
        out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, int]:
        """Mask a frame and return it as HDF5 shuffle byte planes, shape (4, ny, nx) uint8.

        ``planes[k, y, x]`` is byte ``k`` (little-endian) of the masked int32
        value, so a chunk's shuffled bytes are its tiles' planes in order.
        ``out`` (uint8, (4, ny, nx)) is filled and returned when given.
        """

    @abstractmethod
    def encode_tiles(
        self,
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
        deflated as in :func:`dials_mdxbg.encode.codec.encode_segment`.

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

    @abstractmethod
    def unshuffle_into(
        self, inflated: bytes, chunk_shape: tuple[int, int, int], out: np.ndarray, x0: int
    ) -> None:
        """Unshuffle an inflated int32 chunk into a block at column ``x0``.

        ``out`` (nf, rows, nx) receives the chunk's first nf frames and rows and
        its columns up to ``nx``. Raises ValueError if the bytes are not such a chunk.
        """

    @abstractmethod
    def decode_chunk_into(
        self,
        payload: bytes,
        chunk_shape: tuple[int, int, int],
        out: np.ndarray,
        x0: int,
        shuffled: bool = True,
    ) -> None:
        """Inflate a stored int32 chunk (deflate, optionally shuffle) into a block.

        As :meth:`unshuffle_into` on ``codec.inflate(payload)`` (or a plain copy
        when not ``shuffled``). Raises (nothing written) if the payload is not
        such a chunk.
        """

    @abstractmethod
    def bin_block(
        self,
        block: np.ndarray,
        f_bins: np.ndarray,
        y_bins: np.ndarray,
        x_edges: np.ndarray,
        valid_range: tuple[int, int] | None,
        sums,
        keep: np.ndarray | None = None,
    ) -> None:
        """Add a block's valid counts into ``sums`` (a :class:`~dials_mdxbg.binning.sums.BinSums`).

        Args:
            block: int32 masked counts (nf, rows, nx), full width.
            f_bins: frame bin of each of the block's frames.
            y_bins: row bin of each of its rows.
            x_edges: column bin edges (nbx + 1).
            valid_range: inclusive range of counts that take part, or None.
            sums: ``total``, ``count`` (int64) and ``total_sq`` (float64), (nphi, nby, nbx).
            keep: optional bool array like ``block``, False = left out.
        """

    @abstractmethod
    def bin_raw_frame(
        self,
        raw: np.ndarray,
        static_valid: np.ndarray | None,
        trusted_range: tuple[float, float],
        extra_valid: np.ndarray | None,
        f_bin: int,
        y_bins: np.ndarray,
        x_edges: np.ndarray,
        valid_range: tuple[int, int] | None,
        sums,
    ) -> int:
        """Mask one raw frame (ny, nx) and add it into ``sums`` in frame bin ``f_bin``.

        The sums of :meth:`mask_frame` then :meth:`bin_block` (masked pixels
        are -1 and never binned). Returns the pixels masked beyond the static mask.
        """

    @abstractmethod
    def bslz4_decode(
        self, chunk: bytes, shape: tuple[int, ...], dtype, out: np.ndarray | None = None
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

    @abstractmethod
    def bslz4_decode_rows(
        self, chunk: bytes, shape: tuple[int, int], row0: int, out: np.ndarray
    ) -> np.ndarray:
        """Rows ``row0 .. row0 + len(out)`` of a 4-byte bitshuffle/LZ4 chunk of ``shape``.

        The same values as :meth:`bslz4_decode` then slicing, from only the blocks
        that hold those rows (an import thread's band of a 16M frame is 9 MB, the
        frame 72 MB). ``out``: C-contiguous (rows, nx) array of the chunk's dtype;
        rows past the frame are left as they are.

        Returns:
            The decoded rows: ``out`` up to the frame's last row.

        Raises:
            ValueError: not a bitshuffle/LZ4 chunk of that shape.
        """

    @abstractmethod
    def flag_top(self, values: np.ndarray, top: int) -> None:
        """In place: ``top - 1`` -> -1, ``top - 2`` -> -2 (FormatNXmx's bit-depth flags)."""

    @abstractmethod
    def cbf_byte_offset(
        self, packed: bytes | memoryview, shape: tuple[int, int], out: np.ndarray | None = None
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

    @abstractmethod
    def bslz4_bin_frame(
        self,
        chunk: bytes,
        top: int,
        static_valid: np.ndarray,
        trusted_range: tuple[float, float],
        f_bin: int,
        y_bins: np.ndarray,
        x_edges: np.ndarray,
        valid_range: tuple[int, int] | None,
        sums,
    ) -> int:
        """Decode a 4-byte-pixel chunk, flag it (``top`` > 0) and bin it as :meth:`bin_raw_frame`.

        Returns the pixels masked by the trusted range.

        Raises:
            ValueError: not a bitshuffle/LZ4 chunk of the frame's size.
        """


    @abstractmethod
    def cell_moments(self, block, grids, valid_range, keep, row0, outs) -> None:
        """Add the interpolation-cell moments of rows of one frame into ``outs``.

        See :func:`dials_mdxbg.binning.diagnostics.cell_moments` (the caller).

        Args:
            block: int32 counts (rows, nx) of rows ``row0..``, -1 = masked.
            grids: :class:`~dials_mdxbg.binning.diagnostics.CellGrid` of each map.
            valid_range: inclusive range of valid counts, or None.
            keep: optional bool (rows, nx), False = not a valid pixel.
            row0: the block's first row.
            outs: (nby, nbx, 14) float64 accumulators, one per grid.
        """

    @abstractmethod
    def score_cells(self, moments, plane, cells, exposure, res) -> None:
        """Add a prediction's squared-error sums into ``res`` (9 float64).

        See :func:`dials_mdxbg.binning.diagnostics.score_cells` (the caller).
        """


def _extent(chunk_shape, out: np.ndarray, x0: int) -> tuple[int, int, int]:
    """(frames, rows, columns) of a chunk that land in ``out`` at column ``x0``."""
    cf, cy, cx = chunk_shape
    nf, rows, nx = out.shape
    if nf > cf or rows > cy or not 0 <= x0 < nx:
        raise ValueError(f"a block {out.shape} at column {x0} is not inside a chunk {chunk_shape}")
    return nf, rows, min(cx, nx - x0)


class NumpyBackend(Backend):
    """The reference: numpy (and the isal package for deflate), same bytes as the C kernels.

    Composite methods call the other methods through ``self``, so that
    :class:`CompiledBackend`, when it hands an input back here, still runs
    the parts it can in C.
    """

    name = "numpy"

    def mask_frame(self, raw, static_valid, trusted_range, extra_valid=None):
        return masking.apply_mask(raw, static_valid, trusted_range, extra_valid)

    def mask_to_planes(self, raw, static_valid, trusted_range, extra_valid=None, out=None):
        planes = out if out is not None else np.empty((4, *raw.shape), dtype=np.uint8)
        masked, n_dynamic = self.mask_frame(raw, static_valid, trusted_range, extra_valid)
        as_bytes = masked.astype("<i4", copy=False).view(np.uint8).reshape(*masked.shape, 4)
        for k in range(4):
            planes[k] = as_bytes[:, :, k]
        return planes, n_dynamic

    def encode_tiles(
        self, raw, static_valid, trusted_range, chunk_yx, tiles, level, extra_valid=None
    ):
        cy, cx = chunk_yx
        pieces, n_dynamic = [], 0
        for y0, x0 in np.asarray(tiles).reshape(-1, 2).tolist():
            window = (slice(y0, y0 + cy), slice(x0, x0 + cx))
            planes, n = self.mask_to_planes(
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
            pieces.append([codec.encode_segment(planes[k], level) for k in range(4)])
            n_dynamic += n
        return pieces, n_dynamic

    def unshuffle_into(self, inflated, chunk_shape, out, x0):
        nf, rows, cols = _extent(chunk_shape, out, x0)
        chunk = codec.unshuffle(inflated, np.int32, chunk_shape)
        out[:, :, x0 : x0 + cols] = chunk[:nf, :rows, :cols]

    def decode_chunk_into(self, payload, chunk_shape, out, x0, shuffled=True):
        inflated = codec.inflate(payload)
        if shuffled:
            self.unshuffle_into(inflated, chunk_shape, out, x0)
            return
        nf, rows, cols = _extent(chunk_shape, out, x0)
        chunk = np.frombuffer(inflated, dtype=np.int32).reshape(chunk_shape)
        out[:, :, x0 : x0 + cols] = chunk[:nf, :rows, :cols]

    def bin_block(self, block, f_bins, y_bins, x_edges, valid_range, sums, keep=None):
        # Imported here: binning.sums calls backend() (a cycle at import time).
        from dials_mdxbg.binning.sums import add_block

        add_block(block, f_bins, y_bins, x_edges, valid_range, sums, keep)

    def bin_raw_frame(
        self, raw, static_valid, trusted_range, extra_valid, f_bin, y_bins, x_edges, valid_range,
        sums,
    ):  # fmt: skip
        masked, n_dynamic = self.mask_frame(raw, static_valid, trusted_range, extra_valid)
        f_bins = np.array([f_bin], dtype=np.int64)
        self.bin_block(masked[np.newaxis], f_bins, y_bins, x_edges, valid_range, sums)
        return n_dynamic


    def bslz4_decode(self, chunk, shape, dtype, out=None):
        try:
            import lz4.block
        except ImportError:
            raise ValueError("bitshuffle/LZ4 chunk: the lz4 package is needed") from None
        dtype = np.dtype(dtype)
        e = dtype.itemsize
        n = int(np.prod(shape))
        data = memoryview(chunk)
        if len(data) < 12:
            raise ValueError("bitshuffle/LZ4 chunk: truncated chunk")
        nbytes = int.from_bytes(data[:8], "big")
        block = int.from_bytes(data[8:12], "big") // e
        if nbytes != n * e or block == 0 or block % 8:
            raise ValueError("bitshuffle/LZ4 chunk: chunk size does not match the frame")
        result = np.empty(n * e, dtype=np.uint8)
        pos, done = 12, 0
        while n - done >= 8:
            m = min(block, (n - done) // 8 * 8)
            size = int.from_bytes(data[pos : pos + 4], "big")
            try:
                raw = lz4.block.decompress(data[pos + 4 : pos + 4 + size], uncompressed_size=m * e)
            except lz4.block.LZ4BlockError:
                raise ValueError("bitshuffle/LZ4 chunk: corrupt LZ4 block") from None
            pos += 4 + size
            # Bit plane 8j + i holds bit i of byte j of every element.
            planes = np.frombuffer(raw, dtype=np.uint8).reshape(8 * e, m // 8)
            bits = np.unpackbits(planes, axis=1, bitorder="little").reshape(e, 8, m)
            elems = np.packbits(bits.transpose(2, 0, 1), axis=2, bitorder="little")
            result[done * e : (done + m) * e] = elems.reshape(-1)
            done += m
        tail = (n - done) * e
        if len(data) - pos < tail:
            raise ValueError("bitshuffle/LZ4 chunk: truncated chunk")
        result[done * e :] = np.frombuffer(data[pos : pos + tail], dtype=np.uint8)
        decoded = result.view(dtype).reshape(shape)
        if out is None:
            return decoded
        out[...] = decoded
        return out

    def cbf_byte_offset(self, packed, shape, out=None):
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

    def bslz4_decode_rows(self, chunk, shape, row0, out):
        rows = min(out.shape[0], shape[0] - row0)
        frame = self.bslz4_decode(chunk, shape, out.dtype)
        out[:rows] = frame[row0 : row0 + rows]
        return out[:rows]

    def flag_top(self, values, top):
        high = values == top - 1
        values[values == top - 2] = -2
        values[high] = -1

    def bslz4_bin_frame(
        self, chunk, top, static_valid, trusted_range, f_bin, y_bins, x_edges, valid_range,
        sums,
    ):  # fmt: skip
        raw = self.bslz4_decode(chunk, static_valid.shape, np.uint32).view(np.int32)
        if top:
            self.flag_top(raw, top)
        return self.bin_raw_frame(
            raw, static_valid, trusted_range, None, f_bin, y_bins, x_edges, valid_range, sums
        )

    def cell_moments(self, block, grids, valid_range, keep, row0, outs):
        from dials_mdxbg.binning.diagnostics import cell_moments_reference
        from dials_mdxbg.binning.sums import valid_mask

        valid = valid_mask(block, valid_range)
        if keep is not None:
            valid &= keep
        for grid, out in zip(grids, outs):
            out += cell_moments_reference(block, valid, grid, row0)

    def score_cells(self, moments, plane, cells, exposure, res):
        from dials_mdxbg.binning.diagnostics import score_cells_reference

        res += score_cells_reference(moments, plane, cells, exposure)


def _ptr(array: np.ndarray) -> int:
    return array.ctypes.data


def _index(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.int64)


def _takes_frame(raw: np.ndarray, static_valid, extra_valid) -> bool:
    """True when the C masking kernels take this frame (int32, contiguous, no shadow)."""
    return (
        raw.dtype == np.int32
        and raw.flags.c_contiguous
        and static_valid is not None
        and static_valid.dtype == np.bool_
        and static_valid.flags.c_contiguous
        and static_valid.shape == raw.shape
        and extra_valid is None
    )


def _takes_block(out: np.ndarray) -> bool:
    return out.dtype == np.int32 and out.flags.c_contiguous


def _valid_bounds(valid_range: tuple[int, int] | None) -> tuple[int, int]:
    info = np.iinfo(np.int32)
    lo, hi = valid_range if valid_range is not None else (info.min, info.max)
    return max(int(lo), info.min), min(int(hi), info.max)


class CompiledBackend(NumpyBackend):
    """The C kernels of ``_ckernels.c``; inputs they cannot take go to the numpy reference."""

    name = "compiled"

    def __init__(self, lib: ctypes.CDLL):
        self._lib = lib
        self.has_decoder = bool(lib.mdx_have_libdeflate())
        # The C encoder takes ISA-L levels (0-3) as the isal package maps them;
        # with zlib standing in for isal the levels would not mean the same.
        self.has_encoder = bool(lib.mdx_have_isal()) and codec.DEFLATE_BACKEND == "isal"
        self.has_bslz4 = bool(lib.mdx_have_lz4())
        self._scratch = threading.local()  # per-thread buffers, reused call after call

    @classmethod
    def load(cls) -> CompiledBackend | None:
        """The C library with its prototypes declared, or None if it is not built."""
        spec = importlib.util.find_spec("dials_mdxbg.native._ckernels")
        if spec is None or not spec.origin:
            return None
        try:
            lib = ctypes.CDLL(spec.origin)  # CDLL, not PyDLL: calls release the GIL
            for name, (restype, argtypes) in PROTOTYPES.items():
                if name in OPTIONAL and not getattr(lib, OPTIONAL[name])():
                    continue
                function = getattr(lib, name)
                function.restype = restype
                function.argtypes = argtypes
        except (OSError, AttributeError):
            return None
        return cls(lib)

    def _buffer(self, name: str, size: int) -> np.ndarray:
        buffer = getattr(self._scratch, name, None)
        if buffer is None or buffer.size < size:
            buffer = np.empty(size, dtype=np.uint8)
            setattr(self._scratch, name, buffer)
        return buffer

    def mask_frame(self, raw, static_valid, trusted_range, extra_valid=None):
        if not _takes_frame(raw, static_valid, extra_valid):
            return super().mask_frame(raw, static_valid, trusted_range, extra_valid)
        lo, hi = masking.integer_bounds(trusted_range, raw.dtype)
        out = np.empty(raw.shape, dtype=np.int32)
        n_dynamic = self._lib.mdx_mask_frame(
            _ptr(raw), _ptr(static_valid), raw.size, lo, hi, _ptr(out)
        )
        return out, int(n_dynamic)

    def mask_to_planes(self, raw, static_valid, trusted_range, extra_valid=None, out=None):
        planes = out if out is not None else np.empty((4, *raw.shape), dtype=np.uint8)
        if not _takes_frame(raw, static_valid, extra_valid) or not planes.flags.c_contiguous:
            return super().mask_to_planes(raw, static_valid, trusted_range, extra_valid, planes)
        lo, hi = masking.integer_bounds(trusted_range, raw.dtype)
        n_dynamic = self._lib.mdx_mask_to_planes(
            _ptr(raw), _ptr(static_valid), raw.size, lo, hi, _ptr(planes)
        )
        return planes, int(n_dynamic)

    def encode_tiles(
        self, raw, static_valid, trusted_range, chunk_yx, tiles, level, extra_valid=None
    ):
        if not (self.has_encoder and _takes_frame(raw, static_valid, extra_valid)):
            return super().encode_tiles(
                raw, static_valid, trusted_range, chunk_yx, tiles, level, extra_valid
            )
        ny, nx = raw.shape
        cy, cx = chunk_yx
        tiles = np.ascontiguousarray(tiles, dtype=np.int64).reshape(-1, 2)
        n_pieces = 4 * len(tiles)
        # Deflate never grows data by more than ~0.1% plus a few bytes per piece.
        out = self._buffer("encoded", n_pieces * (cy * cx + (cy * cx >> 3) + 256))
        offsets = np.empty(n_pieces, dtype=np.int64)
        lengths = np.empty(n_pieces, dtype=np.int64)
        adlers = np.empty(n_pieces, dtype=np.uint32)
        n_dynamic = np.zeros(1, dtype=np.int64)
        lo, hi = masking.integer_bounds(trusted_range, raw.dtype)
        used = self._lib.mdx_encode_tiles(
            _ptr(raw), _ptr(static_valid), ny, nx, lo, hi, cy, cx, _ptr(tiles), len(tiles),
            codec.deflate_level(level), _ptr(out), out.size, _ptr(offsets), _ptr(lengths),
            _ptr(adlers), _ptr(n_dynamic),
        )  # fmt: skip
        if used < 0:  # out of room (or a deflate error): the reference, same data
            return super().encode_tiles(
                raw, static_valid, trusted_range, chunk_yx, tiles, level, extra_valid
            )
        # One copy of the compressed bytes; the pieces are views of it.
        payload = memoryview(out[:used].tobytes())
        pieces = [
            (payload[o : o + n], a, cy * cx)
            for o, n, a in zip(offsets.tolist(), lengths.tolist(), adlers.tolist())
        ]
        return [pieces[i : i + 4] for i in range(0, n_pieces, 4)], int(n_dynamic[0])

    def unshuffle_into(self, inflated, chunk_shape, out, x0):
        extent = _extent(chunk_shape, out, x0)
        if not _takes_block(out) or len(inflated) != 4 * int(np.prod(chunk_shape)):
            super().unshuffle_into(inflated, chunk_shape, out, x0)
            return
        planes = np.frombuffer(inflated, dtype=np.uint8)
        self._lib.mdx_unshuffle4_into(
            _ptr(planes), *chunk_shape, *extent, _ptr(out), *out.shape[1:], x0
        )

    def decode_chunk_into(self, payload, chunk_shape, out, x0, shuffled=True):
        if shuffled and self.has_decoder and _takes_block(out):
            extent = _extent(chunk_shape, out, x0)
            scratch = self._buffer("inflated", 4 * int(np.prod(chunk_shape)))
            source = np.frombuffer(payload, dtype=np.uint8)
            status = self._lib.mdx_decode_chunk_into(
                _ptr(source), source.size, _ptr(scratch), *chunk_shape, *extent, _ptr(out),
                *out.shape[1:], x0,
            )  # fmt: skip
            if status == 0:
                return
        # No libdeflate, or a stream it refused: inflate in Python, unshuffle in C.
        super().decode_chunk_into(payload, chunk_shape, out, x0, shuffled)

    def bin_block(self, block, f_bins, y_bins, x_edges, valid_range, sums, keep=None):
        if keep is not None or not _takes_block(block):
            super().bin_block(block, f_bins, y_bins, x_edges, valid_range, sums, keep)
            return
        nf, rows, nx = block.shape
        f_bins, y_bins, x_edges = _index(f_bins), _index(y_bins), _index(x_edges)
        vlo, vhi = _valid_bounds(valid_range)
        total, count, total_sq = sums.total, sums.count, sums.total_sq
        self._lib.mdx_bin_block(
            _ptr(block), nf, rows, nx, _ptr(f_bins), _ptr(y_bins), _ptr(x_edges),
            total.shape[1], total.shape[2], vlo, vhi, _ptr(total), _ptr(count), _ptr(total_sq),
        )  # fmt: skip

    def bin_raw_frame(
        self, raw, static_valid, trusted_range, extra_valid, f_bin, y_bins, x_edges, valid_range,
        sums,
    ):  # fmt: skip
        if _takes_frame(raw, static_valid, extra_valid):
            ny, nx = raw.shape
            lo, hi = masking.integer_bounds(trusted_range, raw.dtype)
            vlo, vhi = _valid_bounds(valid_range)
            y_bins, x_edges = _index(y_bins), _index(x_edges)
            total, count, total_sq = sums.total, sums.count, sums.total_sq
            n_dynamic = self._lib.mdx_bin_raw_frame(
                _ptr(raw), _ptr(static_valid), ny, nx, lo, hi, int(f_bin), _ptr(y_bins),
                _ptr(x_edges), total.shape[1], total.shape[2], vlo, vhi, _ptr(total),
                _ptr(count), _ptr(total_sq),
            )  # fmt: skip
            if n_dynamic >= 0:  # -1: out of memory, nothing added
                return int(n_dynamic)
        # Mask (in C where it can), then bin the masked frame in C.
        return super().bin_raw_frame(
            raw, static_valid, trusted_range, extra_valid, f_bin, y_bins, x_edges, valid_range,
            sums,
        )  # fmt: skip


    def bslz4_decode(self, chunk, shape, dtype, out=None):
        dtype = np.dtype(dtype)
        if not self.has_bslz4:
            return super().bslz4_decode(chunk, shape, dtype, out)
        if out is None:
            out = np.empty(shape, dtype=dtype)
        elif out.shape != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
            raise ValueError("bslz4_decode: out does not match the chunk")
        source = np.frombuffer(chunk, dtype=np.uint8)
        status = self._lib.mdx_bslz4_decode(
            _ptr(source), source.size, _ptr(out), out.nbytes, dtype.itemsize
        )
        if status != out.nbytes:
            raise ValueError(f"bitshuffle/LZ4 chunk: {BSLZ4_ERRORS.get(status, status)}")
        return out

    def bslz4_decode_rows(self, chunk, shape, row0, out):
        if not self.has_bslz4:
            return super().bslz4_decode_rows(chunk, shape, row0, out)
        ny, nx = shape
        if out.ndim != 2 or out.shape[1] != nx or not out.flags.c_contiguous or row0 >= ny:
            raise ValueError("bslz4_decode_rows: out does not match the chunk")
        rows = min(out.shape[0], ny - row0)
        source = np.frombuffer(chunk, dtype=np.uint8)
        status = self._lib.mdx_bslz4_decode_range(
            _ptr(source), source.size, _ptr(out), out.itemsize, row0 * nx, rows * nx
        )
        if status != rows * nx:
            raise ValueError(f"bitshuffle/LZ4 chunk: {BSLZ4_ERRORS.get(status, status)}")
        return out[:rows]

    def set_bslz4_simd(self, enabled: bool) -> None:
        """Allow (default) or forbid the AVX2 transpose (tests compare both)."""
        if self.has_bslz4:
            self._lib.mdx_bslz4_set_simd(int(bool(enabled)))

    def cbf_byte_offset(self, packed, shape, out=None):
        if out is None:
            out = np.empty(shape, dtype=np.int32)
        elif out.shape != tuple(shape) or out.dtype != np.int32 or not out.flags.c_contiguous:
            raise ValueError("cbf_byte_offset: out does not match the frame")
        source = np.frombuffer(packed, dtype=np.uint8)
        done = self._lib.mdx_cbf_byte_offset(_ptr(source), source.size, _ptr(out), out.size)
        if done != out.size:
            raise ValueError("CBF byte-offset data end before the frame is full")
        return out

    def flag_top(self, values, top):
        if values.dtype == np.int32 and values.flags.c_contiguous and values.flags.writeable:
            self._lib.mdx_flag_top(_ptr(values), values.size, int(top))
        else:
            super().flag_top(values, top)

    def bslz4_bin_frame(
        self, chunk, top, static_valid, trusted_range, f_bin, y_bins, x_edges, valid_range,
        sums,
    ):  # fmt: skip
        usable = static_valid.dtype == np.bool_ and static_valid.flags.c_contiguous
        if not (self.has_bslz4 and usable):
            return super().bslz4_bin_frame(
                chunk, top, static_valid, trusted_range, f_bin, y_bins, x_edges, valid_range,
                sums,
            )  # fmt: skip
        ny, nx = static_valid.shape
        lo, hi = masking.integer_bounds(trusted_range, np.dtype(np.int32))
        vlo, vhi = _valid_bounds(valid_range)
        y_bins, x_edges = _index(y_bins), _index(x_edges)
        total, count, total_sq = sums.total, sums.count, sums.total_sq
        source = np.frombuffer(chunk, dtype=np.uint8)
        n_dynamic = self._lib.mdx_bslz4_bin_frame(
            _ptr(source), source.size, int(top), _ptr(static_valid), ny, nx, lo, hi, int(f_bin),
            _ptr(y_bins), _ptr(x_edges), total.shape[1], total.shape[2], vlo, vhi, _ptr(total),
            _ptr(count), _ptr(total_sq),
        )  # fmt: skip
        if n_dynamic < 0:
            raise ValueError(f"bitshuffle/LZ4 chunk: {BSLZ4_ERRORS.get(n_dynamic, n_dynamic)}")
        return int(n_dynamic)

    def cell_moments(self, block, grids, valid_range, keep, row0, outs):
        if block.dtype != np.int32 or not block.flags.c_contiguous:
            super().cell_moments(block, grids, valid_range, keep, row0, outs)
            return
        rows, nx = block.shape
        held = []  # the arrays whose addresses C reads

        def addresses(arrays) -> np.ndarray:
            held.extend(arrays)
            return np.array([a.ctypes.data for a in arrays], dtype=np.uint64)

        runs = [g.runs for g in grids]
        y_cell = addresses([_index(g.y_cell[row0 : row0 + rows]) for g in grids])
        y_w = addresses([np.ascontiguousarray(g.y_w[row0 : row0 + rows]) for g in grids])
        edges = addresses([r.edges for r in runs])
        cells = addresses([r.cell for r in runs])
        alpha = addresses([r.alpha for r in runs])
        beta = addresses([r.beta for r in runs])
        n_runs = np.array([len(r.cell) for r in runs], dtype=np.int64)
        nbx = np.array([g.shape[1] for g in grids], dtype=np.int64)
        out = addresses(list(outs))
        if keep is not None:
            keep = np.ascontiguousarray(keep, dtype=np.bool_)
        vlo, vhi = _valid_bounds(valid_range)
        self._lib.mdx_cell_moments(
            _ptr(block), rows, nx, None if keep is None else _ptr(keep), vlo, vhi, len(grids),
            _ptr(y_cell), _ptr(y_w), _ptr(edges), _ptr(cells), _ptr(alpha), _ptr(beta),
            _ptr(n_runs), _ptr(nbx), _ptr(out),
        )  # fmt: skip

    def score_cells(self, moments, plane, cells, exposure, res):
        moments = np.ascontiguousarray(moments, dtype=np.float64)
        plane = np.ascontiguousarray(plane, dtype=np.float64)
        self._lib.mdx_score_cells(
            _ptr(moments), _ptr(plane), plane.shape[0], plane.shape[1], cells[0], cells[1],
            float(exposure), _ptr(res),
        )  # fmt: skip


@functools.lru_cache(maxsize=None)
def backend() -> Backend:
    """The kernels this process uses, chosen on first call.

    ``DIALS_MDXBG_PURE_NUMPY=1`` (any non-empty value) selects the numpy
    reference; otherwise the C kernels if the library loads. Tests switch
    with ``backend.cache_clear()``.
    """
    if os.environ.get("DIALS_MDXBG_PURE_NUMPY"):
        return NumpyBackend()
    return CompiledBackend.load() or NumpyBackend()


__all__ = [
    "BSLZ4_ERRORS",
    "Backend",
    "CompiledBackend",
    "NumpyBackend",
    "OPTIONAL",
    "PROTOTYPES",
    "backend",
]
