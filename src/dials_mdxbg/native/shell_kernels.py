"""The shell model's per-frame sums: the C kernels beside their numpy twins.

:func:`fit_frame` adds a frame's valid counts into the joint (shell, sector)
histogram and the per-pixel sums (:mod:`dials_mdxbg.binning.shell_sums`);
:func:`score_frame` adds a frame's held-out sums against a half model's
prediction, :func:`score_pair` those of two frames predicted from the same
two phi planes in one pass over the per-pixel tables. A count takes part
when it is not -1 (masked), lies inside ``valid_range`` (inclusive) and is
not excluded. The fit's sums are exact integers (or a count times the
exposure), so both paths give the same bits; the score's are float64 sums of
float32 predictions, equal to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dials_mdxbg.native import lib
from dials_mdxbg.native.bin_kernels import valid_mask


def _flat(array: np.ndarray | None, dtype) -> np.ndarray | None:
    """A contiguous 1-d view (or copy) of ``array`` as ``dtype``; None stays None."""
    if array is None:
        return None
    return np.ascontiguousarray(array, dtype=dtype).reshape(-1)


def fit_frame(
    frame: np.ndarray,
    joint: np.ndarray,
    excluded: np.ndarray | None,
    valid_range: tuple[int, int] | None,
    t: float,
    counts: np.ndarray,
    exposure: np.ndarray,
    pixel_counts: np.ndarray,
    pixel_exposure: np.ndarray,
    y_index: np.ndarray,
    x_index: np.ndarray,
    box_count: np.ndarray,
) -> None:
    """Add one frame's valid counts into the shell sums, in place; in C when it fits.

    Args:
        frame: int32 masked counts (rows, nx).
        joint: int32 joint cell of each pixel (rows, nx).
        excluded: optional bool (rows, nx), True = left out.
        valid_range: inclusive range of counts that take part, or None.
        t: the frame's exposure time (s).
        counts, exposure: float64 (n_joint,) sums of counts and pixel-seconds.
        pixel_counts, pixel_exposure: float32 (rows, nx) C-contiguous per-pixel sums.
        y_index, x_index: the map bin of each row and column (int64).
        box_count: int64 (nby, nbx) valid pixels in each map bin of the frame's phi bin.
    """
    c = lib.library()
    targets = (counts, exposure, pixel_counts, pixel_exposure)
    boxes = (y_index, x_index, box_count)
    if (
        c is None
        or not lib.takes_block(frame)
        or not all(a.flags.c_contiguous for a in targets)
        or box_count.dtype != np.int64
        or not box_count.flags.c_contiguous
    ):
        fit_frame_numpy(frame, joint, excluded, valid_range, t, *targets, *boxes)
        return
    y_index, x_index = lib.index(y_index), lib.index(x_index)
    joint = _flat(joint, np.int32)
    ex = _flat(excluded, np.uint8)
    per_cell = np.zeros(counts.size, dtype=np.int64)
    vlo, vhi = lib.valid_bounds(valid_range)
    rows, nx = frame.shape
    c.mdx_shell_fit_frame(
        lib.ptr(frame), rows, nx, lib.ptr(joint), None if ex is None else lib.ptr(ex),
        vlo, vhi, lib.ptr(counts), lib.ptr(per_cell), lib.ptr(pixel_counts),
        lib.ptr(pixel_exposure), float(t), lib.ptr(y_index), lib.ptr(x_index),
        box_count.shape[1], lib.ptr(box_count),
    )  # fmt: skip
    exposure += per_cell.astype(np.float64) * float(t)


def fit_frame_numpy(frame, joint, excluded, valid_range, t, counts, exposure, pixel_counts,
                    pixel_exposure, y_index, x_index, box_count) -> None:  # fmt: skip
    """The numpy twin of :func:`fit_frame` (same arguments, same sums)."""
    valid, values = _fit_cells(frame, joint, excluded, valid_range, t, counts, exposure,
                               y_index, x_index, box_count)  # fmt: skip
    pixel_counts += values.reshape(pixel_counts.shape)
    pixel_exposure += valid.reshape(pixel_exposure.shape) * np.float32(t)


def _fit_cells(frame, joint, excluded, valid_range, t, counts, exposure, y_index, x_index,
               box_count) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The fit's sums but the per-pixel ones; returns the valid flags and float64 counts."""
    valid = valid_mask(frame, valid_range, excluded)
    nby, nbx = box_count.shape
    cell = (np.asarray(y_index)[:, np.newaxis] * nbx + np.asarray(x_index)[np.newaxis, :])
    box_count += np.bincount(cell[valid], minlength=nby * nbx).reshape(nby, nbx)
    valid = valid.reshape(-1)
    joint = joint.reshape(-1)
    values = np.where(valid, frame.reshape(-1), 0).astype(np.float64)
    counts += np.bincount(joint, values, counts.size)
    exposure += np.bincount(joint, valid.astype(np.float64), counts.size) * float(t)
    return valid, values


def fit_frame_packed(frame, joint, excluded, valid_range, t, counts, exposure, packed, y_index,
                     x_index, box_count) -> None:  # fmt: skip
    """:func:`fit_frame` with the per-pixel sums packed: ``packed`` (uint32, rows x nx) gains
    ``count + 65536`` at each valid pixel (the caller keeps counts within 16 bits: counts
    from 0, :func:`dials_mdxbg.binning.shell_sums.pixel_table`)."""
    c = lib.library()
    if (
        c is None
        or not lib.takes_block(frame)
        or not all(a.flags.c_contiguous for a in (counts, exposure))
        or packed.dtype != np.uint32
        or not packed.flags.c_contiguous
        or box_count.dtype != np.int64
        or not box_count.flags.c_contiguous
    ):
        fit_frame_packed_numpy(frame, joint, excluded, valid_range, t, counts, exposure, packed,
                               y_index, x_index, box_count)  # fmt: skip
        return
    y_index, x_index = lib.index(y_index), lib.index(x_index)
    joint = _flat(joint, np.int32).reshape(frame.shape)
    ex = _flat(excluded, np.uint8)
    ex = None if ex is None else ex.reshape(frame.shape)
    vlo, vhi = lib.valid_bounds(valid_range)
    rows, nx = frame.shape
    step = max(1, (PACKED_PIXELS - 1) // max(nx, 1))  # a cell's pixels within 24 bits
    cells = np.empty(counts.size, dtype=np.uint64)
    per_cell = np.zeros(counts.size, dtype=np.uint64)
    for a in range(0, rows, step):
        b = min(a + step, rows)
        cells[...] = 0
        c.mdx_shell_fit_packed(
            lib.ptr(frame[a:b]), b - a, nx, lib.ptr(joint[a:b]),
            None if ex is None else lib.ptr(ex[a:b]), vlo, vhi, lib.ptr(cells),
            lib.ptr(packed[a:b]), lib.ptr(y_index[a:b]), lib.ptr(x_index), box_count.shape[1],
            lib.ptr(box_count),
        )  # fmt: skip
        # Sums of integers (exact): the bits of adding each pixel's count in turn.
        counts += (cells & np.uint64((1 << 40) - 1)).astype(np.float64)
        per_cell += cells >> np.uint64(40)
    exposure += per_cell.astype(np.float64) * float(t)  # once per frame, as the twin


PACKED_PIXELS = 1 << 24
"""Pixels a call of the packed fit kernel takes at most: a cell's count of them fits the
24 bits above its counts' 40."""


def fit_frame_packed_numpy(frame, joint, excluded, valid_range, t, counts, exposure, packed,
                           y_index, x_index, box_count) -> None:  # fmt: skip
    """The numpy twin of :func:`fit_frame_packed` (same arguments, same sums)."""
    valid, values = _fit_cells(frame, joint, excluded, valid_range, t, counts, exposure,
                               y_index, x_index, box_count)  # fmt: skip
    word = np.where(valid, values.astype(np.uint32) + np.uint32(65536), np.uint32(0))
    packed += word.reshape(packed.shape)


@dataclass(frozen=True)
class PhiTerm:
    """One phi plane of a half model's prediction: residual plane, ``1/max(N, 1)`` of
    the residual counts ``N`` of the half and of the full model (float32, flat over
    cells; :func:`inverse_counts`), and its weight."""

    plane: np.ndarray
    inv_half: np.ndarray
    inv_full: np.ndarray
    weight: float


def inverse_counts(counts: np.ndarray) -> np.ndarray:
    """``1/max(N, 1)`` in float32: a residual cell's relative variance, per cell."""
    one = np.float32(1.0)
    return one / np.maximum(np.asarray(counts, dtype=np.float32), one)


def score_frame(
    frame: np.ndarray,
    excluded: np.ndarray | None,
    valid_range: tuple[int, int] | None,
    t: float,
    basis,
    static: np.ndarray,
    rel: np.ndarray,
    rel_full: np.ndarray,
    terms: list[PhiTerm],
    res: np.ndarray,
) -> None:
    """Add a frame's held-out sums (sq, pois, rate, v_half, v_full, pixels) into ``res``.

    Args:
        frame: int32 masked counts (rows, nx); excluded: optional bool like it.
        valid_range: inclusive range of counts that take part, or None.
        t: exposure time (s).
        basis: the rows' :class:`dials_mdxbg.binning.shells.ResidualBasis`.
        static, rel: the half model's ``P * Q`` and relative variance at the rows (float32);
            rel_full: the full model's relative variance.
        terms: one or two :class:`PhiTerm` (mdx2's phi interpolation).
        res: float64 (6,), added into.
    """
    c = lib.library()
    arrays = (basis.i00, basis.i01, basis.wb, basis.ws, basis.near, static, rel, rel_full)
    if (
        c is None
        or not lib.takes_block(frame)
        or not 1 <= len(terms) <= 2
        or not all(a.flags.c_contiguous for a in arrays)
    ):
        score_frame_numpy(frame, excluded, valid_range, t, basis, static, rel, rel_full,
                          terms, res)  # fmt: skip
        return
    ex = _flat(excluded, np.uint8)
    vlo, vhi = lib.valid_bounds(valid_range)
    first = terms[0]
    second = terms[1] if len(terms) > 1 else None
    planes = [_flat(a, np.float32) for a in (first.plane, first.inv_half, first.inv_full)]
    more = [None, None, None] if second is None else [
        _flat(a, np.float32) for a in (second.plane, second.inv_half, second.inv_full)
    ]  # fmt: skip
    p = lib.ptr
    c.mdx_shell_score_frame(
        p(frame), frame.size, None if ex is None else p(ex), vlo, vhi, float(t),
        *(p(a) for a in (basis.i00, basis.i01, basis.wb, basis.ws, basis.near)),
        int(basis.band_step), p(static), p(rel), p(rel_full),
        *(p(a) for a in planes), float(first.weight),
        *(None if a is None else p(a) for a in more),
        0.0 if second is None else float(second.weight), p(res),
    )  # fmt: skip


def score_pair(
    frames: tuple[np.ndarray, np.ndarray],
    excluded: tuple[np.ndarray | None, np.ndarray | None],
    valid_range: tuple[int, int] | None,
    times: tuple[float, float],
    basis,
    static: np.ndarray,
    rel: np.ndarray,
    rel_full: np.ndarray,
    terms: tuple[list[PhiTerm], list[PhiTerm]],
    res: tuple[np.ndarray, np.ndarray],
) -> None:
    """:func:`score_frame` of two frames whose two terms share their planes (the same
    half model, between the same phi bin centres): the same sums into ``res[0]`` and
    ``res[1]``, with the rates of each pixel made once for both (in C)."""
    c = lib.library()
    arrays = (basis.i00, basis.i01, basis.wb, basis.ws, basis.near, static, rel, rel_full)
    if (
        c is None
        or not all(lib.takes_block(f) for f in frames)
        or frames[0].shape != frames[1].shape
        or not all(len(t) == 2 for t in terms)
        or not all(a.flags.c_contiguous for a in arrays)
    ):
        for f, ex, t, ts, r in zip(frames, excluded, times, terms, res):
            score_frame(f, ex, valid_range, t, basis, static, rel, rel_full, ts, r)
        return
    ex = [_flat(e, np.uint8) for e in excluded]
    vlo, vhi = lib.valid_bounds(valid_range)
    first, second = terms[0]
    tables = [_flat(a, np.float32) for term in (first, second)
              for a in (term.plane, term.inv_half, term.inv_full)]  # fmt: skip
    w = np.array([term.weight for ts in terms for term in ts], dtype=np.float64)
    p = lib.ptr
    c.mdx_shell_score_pair(
        p(frames[0]), p(frames[1]), frames[0].size, *(None if e is None else p(e) for e in ex),
        vlo, vhi, float(times[0]), float(times[1]),
        *(p(a) for a in (basis.i00, basis.i01, basis.wb, basis.ws, basis.near)),
        int(basis.band_step), p(static), p(rel), p(rel_full), *(p(a) for a in tables), p(w),
        p(res[0]), p(res[1]),
    )  # fmt: skip


def score_frame_numpy(frame, excluded, valid_range, t, basis, static, rel, rel_full, terms,
                      res) -> None:  # fmt: skip
    """The numpy twin of :func:`score_frame` (same arguments, the same sums to rounding)."""
    valid = valid_mask(frame, valid_range, excluded).reshape(-1)
    at = np.flatnonzero(valid)
    i00, i01 = basis.i00.reshape(-1)[at], basis.i01.reshape(-1)[at]
    wb, ws = basis.wb.reshape(-1)[at], basis.ws.reshape(-1)[at]
    near = basis.near.reshape(-1)[at]
    s, r_half, r_full = (a.reshape(-1)[at] for a in (static, rel, rel_full))
    up = basis.band_step
    b = v_half = v_full = None
    for term in terms:
        plane = term.plane.reshape(-1)
        lo = (1 - ws) * plane.take(i00) + ws * plane.take(i01)
        hi = (1 - ws) * plane.take(i00 + up) + ws * plane.take(i01 + up)
        rate = s * ((1 - wb) * lo + wb * hi)
        w, w2 = np.float32(term.weight), np.float32(term.weight * term.weight)
        vh = w2 * (rate * rate * (r_half + term.inv_half.take(near)))
        vf = w2 * (rate * rate * (r_full + term.inv_full.take(near)))
        parts = (w * rate, vh, vf)
        b, v_half, v_full = parts if b is None else (b + parts[0], v_half + vh, v_full + vf)
    c = frame.reshape(-1)[at].astype(np.float64)
    r = c * (1.0 / t)  # as the C kernel
    res += (
        float(((r - b) ** 2).sum()),
        float(c.sum()) / (t * t),
        float(r.sum()),
        float(v_half.sum(dtype=np.float64)),
        float(v_full.sum(dtype=np.float64)),
        float(c.size),
    )
