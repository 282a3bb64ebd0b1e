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
    "mdx_cell_moments": (_INT, (_P, _I64, _I64, _P, _I32, _I32, _I64, *(_P,) * 9)),
    "mdx_score_cells": (None, (_P, _P, _I64, _I64, _I64, _I64, ctypes.c_double, _P)),
}

#: Kernels built only with an optional library, and the function that says whether they were.
OPTIONAL = {"mdx_encode_tiles": "mdx_have_isal", "mdx_decode_chunk_into": "mdx_have_libdeflate"}


class Backend(ABC):
    """The kernels' interface. Arrays in, results out; integer sums are exact.

    Attributes:
        name: "compiled" or "numpy".
        has_encoder: :meth:`encode_tiles` masks and deflates in C (ISA-L).
        has_decoder: :meth:`decode_chunk_into` inflates in C (libdeflate).
    """

    name: str = ""
    has_encoder: bool = False
    has_decoder: bool = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(encoder={self.has_encoder}, decoder={self.has_decoder})"

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


__all__ = ["Backend", "CompiledBackend", "NumpyBackend", "OPTIONAL", "PROTOTYPES", "backend"]
