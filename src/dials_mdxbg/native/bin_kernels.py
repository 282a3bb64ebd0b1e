"""Binning counts into exact bin sums: the C kernels beside their numpy twins.

``sums`` is anything with ``total``, ``count`` (int64) and ``total_sq``
(float64) arrays of shape (nphi, nby, nbx), e.g.
:class:`dials_mdxbg.binning.sums.BinSums`; the kernels add into them in place.
A count takes part when it is not -1 (masked) and lies inside ``valid_range``
(inclusive); sums are exact integers, so any cut of the frames into blocks
gives the same bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dials_mdxbg.model import MASKED_VALUE
from dials_mdxbg.native import lib
from dials_mdxbg.native.detector_codecs import bslz4_decode, bslz4_error, flag_top, has_c_bslz4
from dials_mdxbg.native.mask_kernels import integer_bounds, mask_frame
from dials_mdxbg.native.value_histogram import add_masked_values


def _reduce_last_axis(array: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Sum consecutive runs of ``sizes`` along the last axis.

    mdx2's sections come in at most two sizes (long ones first), so the sum is
    two reshapes instead of a slow ``reduceat``; other sizes (the fine grid of
    bins=auto) take the ``reduceat``.
    """
    long_size = int(sizes[0])
    n_long = int(np.count_nonzero(sizes == long_size))
    if (sizes[:n_long] != long_size).any() or (sizes[n_long:] != sizes[-1]).any():
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        return np.add.reduceat(array, starts, axis=-1)
    split = n_long * long_size
    lead = array.shape[:-1]
    parts = [array[..., :split].reshape(*lead, n_long, long_size).sum(axis=-1)]
    if n_long < len(sizes):
        short_size = int(sizes[-1])
        rest = array[..., split:].reshape(*lead, len(sizes) - n_long, short_size)
        parts.append(rest.sum(axis=-1))
    return np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


def _reduce_runs(array: np.ndarray, starts: np.ndarray, axis: int, dtype) -> np.ndarray:
    """Sum consecutive runs along ``axis`` (run i starts at ``starts[i]``).

    Same result as ``np.add.reduceat``, which is ~10x slower along a
    non-last axis; few runs, each a vectorised add of whole rows.
    """
    bounds = [*starts.tolist(), array.shape[axis]]
    shape = list(array.shape)
    shape[axis] = len(starts)
    out = np.empty(shape, dtype=dtype)
    lead = (slice(None),) * axis
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        np.add.reduce(array[lead + (slice(a, b),)], axis=axis, dtype=dtype, out=out[lead + (i,)])
    return out


def valid_mask(
    block: np.ndarray,
    valid_range: tuple[int, int] | None,
    excluded: np.ndarray | None = None,
) -> np.ndarray:
    """True where a count takes part in a bin mean."""
    if valid_range is not None and valid_range[0] >= 0:
        # One unsigned comparison covers both ends, and -1 (masked) wraps high.
        lo, hi = int(valid_range[0]), int(valid_range[1])
        shifted = block.view(np.uint32) - np.uint32(lo) if lo else block.view(np.uint32)
        valid = shifted <= np.uint32(min(hi - lo, 2**32 - 1))
    else:
        valid = block != MASKED_VALUE
        if valid_range is not None:
            valid &= block >= valid_range[0]
            valid &= block <= valid_range[1]
    if excluded is not None:
        valid &= ~excluded
    return valid


def _sum_dtype(valid_range, n_values: int) -> tuple[type, type]:
    """Narrowest exact dtypes for sums (and sums of squares) of ``n_values`` counts.

    int32 arithmetic is several times faster; it is used only when no partial
    sum can overflow, so the result is exact either way.
    """
    if valid_range is not None:
        top = max(abs(int(valid_range[0])), abs(int(valid_range[1])))
        if top * n_values < 2**31 - 1:
            square = np.int32 if top * top * n_values < 2**31 - 1 else np.float64
            return np.int32, square
    return np.int64, np.float64


def add_block(block, f_bins, y_bins, x_edges, valid_range, sums, keep=None) -> None:
    """The numpy twin of :func:`bin_block` (same arguments, same sums)."""
    n, rows, _ = block.shape
    x_sizes = np.diff(x_edges)
    valid = valid_mask(block, valid_range)
    if keep is not None:
        valid &= keep
    f_starts = np.flatnonzero(np.diff(f_bins, prepend=-1))
    y_starts = np.flatnonzero(np.diff(y_bins, prepend=-1))
    total_type, square_type = _sum_dtype(valid_range, n * rows * int(x_sizes[0]))
    values = np.where(valid, block, 0).astype(total_type, copy=False)

    def reduce(part: np.ndarray, dtype) -> np.ndarray:
        # Frames, then rows: adds of whole contiguous rows (fast); then the
        # much smaller array along x.
        part = _reduce_runs(part, f_starts, 0, dtype)
        part = _reduce_runs(part, y_starts, 1, dtype)
        return _reduce_last_axis(part, x_sizes)

    yi = y_bins[y_starts]
    squares = np.multiply(values, values, dtype=square_type)
    parts = (
        (sums.total, reduce(values, total_type)),
        (sums.count, reduce(valid, np.int32)),
        (sums.total_sq, reduce(squares, square_type)),
    )
    # One frame run at a time: runs of a grid that interleaves frames (e.g. by
    # parity) can share a bin, and a fancy-indexed += would add only one of them.
    for r, f in enumerate(f_bins[f_starts].tolist()):
        for target, part in parts:
            target[f, yi, :] += part[r]


def _bin_target(y_bins, x_edges, valid_range, sums) -> tuple[tuple, tuple]:
    """The arguments every C bin kernel ends with: row bins, column edges, map size,
    valid bounds and the three sums. Returns ``(held, arguments)``: keep ``held``
    (the index arrays whose addresses C reads) until the call returns."""
    y_bins, x_edges = lib.index(y_bins), lib.index(x_edges)
    vlo, vhi = lib.valid_bounds(valid_range)
    total, count, total_sq = sums.total, sums.count, sums.total_sq
    p = lib.ptr
    arguments = (
        p(y_bins), p(x_edges), total.shape[1], total.shape[2], vlo, vhi, p(total), p(count),
        p(total_sq),
    )  # fmt: skip
    return (y_bins, x_edges), arguments


def bin_block(
    block: np.ndarray,
    f_bins: np.ndarray,
    y_bins: np.ndarray,
    x_edges: np.ndarray,
    valid_range: tuple[int, int] | None,
    sums,
    keep: np.ndarray | None = None,
) -> None:
    """Add a block's valid counts into ``sums``: :func:`add_block`, in C when it fits.

    The C kernel takes any column edges and any block without ``keep``; the
    numpy twin assumes mdx2's sections (at most two sizes) along x.

    Args:
        block: int32 masked counts (nf, rows, nx), full width.
        f_bins: frame bin of each of the block's frames (in runs; a bin may recur,
            as in a grid split by frame parity).
        y_bins: row bin of each of its rows (non-decreasing).
        x_edges: column bin edges (nbx + 1).
        valid_range: inclusive range of counts that take part, or None.
        sums: ``total``, ``count`` (int64) and ``total_sq`` (float64), (nphi, nby, nbx).
        keep: optional bool array like ``block``, False = left out.
    """
    c = lib.library()
    if c is None or keep is not None or not lib.takes_block(block):
        add_block(block, f_bins, y_bins, x_edges, valid_range, sums, keep)
        return
    nf, rows, nx = block.shape
    f_bins = lib.index(f_bins)
    held, target = _bin_target(y_bins, x_edges, valid_range, sums)
    c.mdx_bin_block(lib.ptr(block), nf, rows, nx, lib.ptr(f_bins), *target)


def squares_add_exactly(valid_range: tuple[int, int] | None, x_edges: np.ndarray) -> bool:
    """True when every bin segment's sum of squares stays an integer below 2**53.

    Then the sums do not depend on how a row is cut (by chunk edges) or in
    which order its pieces are added: what lets :func:`bin_chunk_planes` bin
    chunk by chunk and give the bits of :func:`bin_block`.
    """
    lo, hi = lib.valid_bounds(valid_range)
    widest = int(np.diff(x_edges).max()) if len(x_edges) > 1 else 0
    top = float(max(abs(lo), abs(hi)))
    return top * top * widest < 2.0**53


def bin_chunk_planes(
    planes: np.ndarray,
    chunk_shape: tuple[int, int, int],
    frames: tuple[int, int],
    extent: tuple[int, int, int],
    f_bins: np.ndarray,
    y_bins: np.ndarray,
    x_edges: np.ndarray,
    valid_range: tuple[int, int] | None,
    sums,
) -> bool:
    """Add part of an inflated, shuffled int32 chunk into ``sums``, never writing the block.

    The sums of :func:`bin_block` on the same counts, when
    :func:`squares_add_exactly` (else nothing is added and False is returned:
    bin the block instead).

    Args:
        planes: the chunk's four byte planes as HDF5's shuffle filter stores them (uint8).
        chunk_shape: (cf, cy, cx) of the stored chunk.
        frames: chunk frames [fa, fb) to add.
        extent: (rows, cols, x0): its first rows and cols, image columns x0 .. x0 + cols.
        f_bins: frame bin of each of those frames.
        y_bins: row bin of each of those rows.
        x_edges: column bin edges of the whole image (nbx + 1).
        valid_range: inclusive range of counts that take part, or None.
        sums: ``total``, ``count``, ``total_sq`` arrays (nphi, nby, nbx).

    Returns:
        True when added.
    """
    if not squares_add_exactly(valid_range, x_edges):
        return False
    c = lib.library()
    if c is None:
        add_chunk_planes(planes, chunk_shape, frames, extent, f_bins, y_bins, x_edges,
                         valid_range, sums)  # fmt: skip
        return True
    (fa, fb), (rows, cols, x0) = frames, extent
    held, target = _bin_target(y_bins, x_edges, valid_range, sums)
    f_bins = lib.index(f_bins)
    status = c.mdx_bin_chunk_planes(
        lib.ptr(planes), *chunk_shape, fa, fb - fa, rows, cols, x0, lib.ptr(f_bins), *target
    )
    if status == -1:  # out of memory for one row: the twin
        add_chunk_planes(planes, chunk_shape, frames, extent, f_bins, y_bins, x_edges,
                         valid_range, sums)  # fmt: skip
    return status in (0, -1)


def add_chunk_planes(planes, chunk_shape, frames, extent, f_bins, y_bins, x_edges, valid_range,
                     sums) -> None:  # fmt: skip
    """The numpy twin of :func:`bin_chunk_planes` (same arguments; it adds, always)."""
    cf, cy, cx = chunk_shape
    (fa, fb), (rows, cols, x0) = frames, extent
    bytes4 = np.asarray(planes, dtype=np.uint8)[: 4 * cf * cy * cx].reshape(4, cf, cy, cx)
    part = bytes4[:, fa:fb, :rows, :cols]
    block = np.ascontiguousarray(np.moveaxis(part, 0, -1)).view("<i4")[..., 0].astype(np.int32)
    # The bins this chunk's columns touch, with their edges cut to the chunk.
    x_edges = np.asarray(x_edges, dtype=np.int64)
    lo = int(np.searchsorted(x_edges, x0, side="right")) - 1
    hi = int(np.searchsorted(x_edges, x0 + cols, side="left"))
    local = np.clip(x_edges[max(lo, 0) : hi + 1] - x0, 0, cols)
    keep = np.flatnonzero(np.diff(local) > 0)
    if keep.size == 0:
        return
    first = max(lo, 0) + int(keep[0])
    local = local[int(keep[0]) : int(keep[-1]) + 2]
    sizes = np.diff(local)
    # add_block picks its sum type by the first bin's width: a bin cut by the
    # chunk's left edge goes on its own, so the first is always the widest.
    cut = 1 if len(sizes) > 1 and sizes[0] < sizes.max() else len(sizes)
    for a, b in ((0, cut), (cut, len(sizes))):
        if a == b:
            continue
        window = slice(first + a, first + b)
        view = _SumsView(sums.total[:, :, window], sums.count[:, :, window],
                         sums.total_sq[:, :, window])  # fmt: skip
        add_block(block[:, :, local[a] : local[b]], np.asarray(f_bins), np.asarray(y_bins),
                  local[a : b + 1] - local[a], valid_range, view)  # fmt: skip


@dataclass(frozen=True)
class _SumsView:
    """Column windows of the three sums (views: adding into them adds into the map)."""

    total: np.ndarray
    count: np.ndarray
    total_sq: np.ndarray


@dataclass(frozen=True)
class FrameBin:
    """Where one frame's valid pixels are added: frame bin ``f_bin`` of ``sums``.

    Attributes:
        f_bin: the frame (phi) bin.
        y_bins: row bin of each image row.
        x_edges: column bin edges.
        valid_range: counts outside [lo, hi] are not added (None: all).
        sums: the bin sums (total, count, total_sq arrays).
    """

    f_bin: int
    y_bins: np.ndarray
    x_edges: np.ndarray
    valid_range: tuple[int, int] | None
    sums: object


def bin_raw_frame(
    raw: np.ndarray,
    static_valid: np.ndarray | None,
    trusted_range: tuple[float, float],
    extra_valid: np.ndarray | None,
    to: FrameBin,
) -> int:
    """Mask one raw frame (ny, nx) and add it into ``to.sums`` in frame bin ``to.f_bin``.

    The sums of :func:`~dials_mdxbg.native.mask_kernels.mask_frame` then
    :func:`bin_block` (masked pixels are -1 and never binned), in one C pass
    when the frame fits. Returns the pixels masked beyond the static mask.
    """
    c = lib.library()
    if c is not None and lib.takes_frame(raw, static_valid, extra_valid):
        ny, nx = raw.shape
        lo, hi = integer_bounds(trusted_range, raw.dtype)
        held, target = _bin_target(to.y_bins, to.x_edges, to.valid_range, to.sums)
        n_dynamic = c.mdx_bin_raw_frame(
            lib.ptr(raw), lib.ptr(static_valid), ny, nx, lo, hi, int(to.f_bin), *target
        )
        if n_dynamic >= 0:  # -1: out of memory, nothing added
            return int(n_dynamic)
    # Mask (in C where it can), then bin the masked frame (in C where it can).
    masked, n_dynamic = mask_frame(raw, static_valid, trusted_range, extra_valid)
    f_bins = np.array([to.f_bin], dtype=np.int64)
    bin_block(masked[np.newaxis], f_bins, to.y_bins, to.x_edges, to.valid_range, to.sums)
    return n_dynamic


def bslz4_bin_frame(
    chunk: bytes,
    top: int,
    static_valid: np.ndarray,
    trusted_range: tuple[float, float],
    to: FrameBin,
    values: np.ndarray | None = None,
) -> int:
    """Decode a 4-byte-pixel chunk, flag it (``top`` > 0) and bin it as :func:`bin_raw_frame`.

    Args:
        values: a value histogram's int64 counts to add the masked frame to
            (:func:`~dials_mdxbg.native.value_histogram.add_masked_values`), or None.
            Counted in the same pass: a sampled frame is not decoded whole.

    Returns:
        The pixels masked by the trusted range.

    Raises:
        ValueError: not a bitshuffle/LZ4 chunk of the frame's size.
    """
    usable = static_valid.dtype == np.bool_ and static_valid.flags.c_contiguous
    if values is not None:
        usable = usable and values.dtype == np.int64 and values.flags.c_contiguous
    if not (has_c_bslz4() and usable):
        raw = bslz4_decode(chunk, static_valid.shape, np.uint32).view(np.int32)
        if top:
            flag_top(raw, top)
        if values is not None:
            add_masked_values(mask_frame(raw, static_valid, trusted_range)[0], values)
        return bin_raw_frame(raw, static_valid, trusted_range, None, to)
    ny, nx = static_valid.shape
    lo, hi = integer_bounds(trusted_range, np.dtype(np.int32))
    held, target = _bin_target(to.y_bins, to.x_edges, to.valid_range, to.sums)
    source = np.frombuffer(chunk, dtype=np.uint8)
    n_dynamic = lib.library().mdx_bslz4_bin_frame(
        lib.ptr(source), source.size, int(top), lib.ptr(static_valid), ny, nx, lo, hi,
        int(to.f_bin), *target,
        None if values is None else lib.ptr(values), 0 if values is None else values.size,
    )  # fmt: skip
    if n_dynamic < 0:
        raise bslz4_error(n_dynamic)
    return int(n_dynamic)
