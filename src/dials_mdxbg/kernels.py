"""Per-pixel loops fused into one pass, with numba when it is there.

Masking a 6M frame with numpy takes several passes (~20 ms); one compiled
pass takes ~5 ms, and can write the HDF5 byte planes (the shuffle filter's
layout) at the same time. numba is optional: without it (or with
``DIALS_MDXBG_NO_NUMBA=1``) the numpy reference in :mod:`masking` and
:mod:`codec` gives the same bytes.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from dials_mdxbg.masking import MASKED_VALUE, _integer_bounds, apply_mask


@functools.lru_cache(maxsize=None)
def _compiled():
    """The numba kernels, compiled (or loaded from numba's cache) on first use."""
    if os.environ.get("DIALS_MDXBG_NO_NUMBA"):
        return None
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(nogil=True, cache=True)
    def mask_frame(raw, static, lo, hi, out):  # pragma: no cover - compiled
        r = raw.ravel()
        s = static.ravel()
        o = out.ravel()
        n_dynamic = 0
        for i in range(r.size):
            v = r[i]
            if not s[i]:
                o[i] = -1
            elif v < lo or v > hi:
                o[i] = -1
                n_dynamic += 1
            else:
                o[i] = v
        return n_dynamic

    @numba.njit(nogil=True, cache=True)
    def mask_to_planes(raw, static, lo, hi, planes):  # pragma: no cover - compiled
        r = raw.ravel()
        s = static.ravel()
        p0 = planes[0].ravel()
        p1 = planes[1].ravel()
        p2 = planes[2].ravel()
        p3 = planes[3].ravel()
        n_dynamic = 0
        for i in range(r.size):
            v = r[i]
            if not s[i]:
                v = -1
            elif v < lo or v > hi:
                v = -1
                n_dynamic += 1
            u = np.uint32(v)
            p0[i] = u & 0xFF
            p1[i] = (u >> 8) & 0xFF
            p2[i] = (u >> 16) & 0xFF
            p3[i] = u >> 24
        return n_dynamic

    @numba.njit(nogil=True, cache=True)
    def unshuffle4(planes, out):  # pragma: no cover - compiled
        n = out.size
        for i in range(n):
            out[i] = (
                np.uint32(planes[i])
                | (np.uint32(planes[n + i]) << 8)
                | (np.uint32(planes[2 * n + i]) << 16)
                | (np.uint32(planes[3 * n + i]) << 24)
            )

    @numba.njit(nogil=True, cache=True)
    def bin_block(block, f_bins, y_bins, x_edges, lo, hi, total, count, total_sq):
        # pragma: no cover - compiled
        n, rows, _ = block.shape
        nbx = x_edges.size - 1
        span = np.uint32(hi - lo)
        for f in range(n):
            fb = f_bins[f]
            for y in range(rows):
                yb = y_bins[y]
                row = block[f, y]
                # One tight loop per x bin, with scalar accumulators.
                for xb in range(nbx):
                    s = 0
                    c = 0
                    q = 0.0
                    for x in range(x_edges[xb], x_edges[xb + 1]):
                        v = row[x]
                        # One unsigned compare for lo <= v <= hi (v - lo wraps
                        # when below); -1 needs its own test only if lo < 0.
                        if np.uint32(v - lo) <= span and (lo >= 0 or v != -1):
                            s += v
                            c += 1
                            q += float(v) * float(v)
                    total[fb, yb, xb] += s
                    count[fb, yb, xb] += c
                    total_sq[fb, yb, xb] += q

    return mask_frame, mask_to_planes, unshuffle4, bin_block


def have_numba() -> bool:
    """True when the compiled kernels are in use."""
    return _compiled() is not None


def _kernel_ready(raw: np.ndarray, static_valid, extra_valid) -> bool:
    return (
        raw.dtype == np.int32
        and raw.flags.c_contiguous
        and static_valid is not None
        and extra_valid is None
        and _compiled() is not None
    )


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
    n_dynamic = _compiled()[0](raw, static_valid, lo, hi, out)
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
    ``out`` (uint8, (4, ny, nx)) is reused when given: a fresh 25 MB array
    per 6M frame would otherwise churn the allocator and grow the process.
    """
    if not _kernel_ready(raw, static_valid, extra_valid):
        masked, n_dynamic = apply_mask(raw, static_valid, trusted_range, extra_valid)
        as_bytes = masked.astype("<i4", copy=False).view(np.uint8).reshape(*masked.shape, 4)
        planes = out if out is not None else np.empty((4, *masked.shape), dtype=np.uint8)
        for k in range(4):
            planes[k] = as_bytes[:, :, k]
        return planes, n_dynamic
    lo, hi = _integer_bounds(trusted_range, raw.dtype)
    planes = out if out is not None else np.empty((4, *raw.shape), dtype=np.uint8)
    n_dynamic = _compiled()[1](raw, static_valid, lo, hi, planes)
    return planes, int(n_dynamic)


def unshuffle_int32(raw: bytes, shape: tuple[int, ...]) -> np.ndarray | None:
    """Compiled inverse of the HDF5 shuffle for int32, or None without numba."""
    kernels = _compiled()
    if kernels is None:
        return None
    out = np.empty(int(np.prod(shape)), dtype=np.uint32)
    kernels[2](np.frombuffer(raw, dtype=np.uint8), out)
    return out.view(np.int32).reshape(shape)


def bin_block(block, f_bins, y_bins, x_edges, valid_range, total, count, total_sq) -> bool:
    """Add a block's valid counts into the bin sums in one pass; False without numba.

    Integer sums, so the result is the same as the numpy path to the last bit.
    """
    kernels = _compiled()
    if kernels is None or block.dtype != np.int32:
        return False
    info = np.iinfo(np.int32)
    lo, hi = valid_range if valid_range is not None else (info.min, info.max)
    lo, hi = max(int(lo), info.min), min(int(hi), info.max)
    kernels[3](block, f_bins, y_bins, x_edges, np.int32(lo), np.int32(hi), total, count, total_sq)
    return True


__all__ = [
    "MASKED_VALUE",
    "bin_block",
    "have_numba",
    "mask_frame",
    "mask_to_planes",
    "unshuffle_int32",
]
