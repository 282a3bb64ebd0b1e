"""Masking a frame as dxtbx does: C kernels beside their numpy twins.

dxtbx's ``ImageSequence.get_mask(i)`` is the AND of a static part (the
external/user mask, the panel's untrusted rectangles such as Pilatus module
gaps, and a goniometer-shadow mask when the imageset has a masker) and a
per-frame part: ``trusted_min < value < trusted_max`` (both ends exclusive),
compared in double precision. mdx2 recomputes all of it on every frame; we
compute the static part once and only apply the trusted range per frame.
"""

from __future__ import annotations

import numpy as np

from dials_mdxbg.model import MASKED_VALUE
from dials_mdxbg.native import lib


def integer_bounds(trusted_range: tuple[float, float], dtype: np.dtype) -> tuple[int, int]:
    """Integer bounds (lo, hi) with ``lo <= v <= hi`` equivalent to ``min < v < max``.

    dxtbx compares in double precision; for integer data ``v > min`` is
    ``v >= floor(min) + 1`` and ``v < max`` is ``v <= ceil(max) - 1``. The
    bounds are clipped to the dtype so that numpy compares without upcasting.
    """
    info = np.iinfo(dtype)
    lo = float(trusted_range[0])
    hi = float(trusted_range[1])
    ilo = info.min if lo == -np.inf else int(np.floor(lo)) + 1
    ihi = info.max if hi == np.inf else int(np.ceil(hi)) - 1
    return max(ilo, info.min), min(ihi, info.max)


def valid_pixels(frame: np.ndarray, trusted_range: tuple[float, float]) -> np.ndarray:
    """True where ``min < value < max`` (dxtbx's trusted range, exclusive)."""
    if np.issubdtype(frame.dtype, np.integer):
        lo, hi = integer_bounds(trusted_range, frame.dtype)
        if lo > hi:
            return np.zeros(frame.shape, dtype=bool)
        valid = frame >= frame.dtype.type(lo)
        valid &= frame <= frame.dtype.type(hi)
        return valid
    return (frame > trusted_range[0]) & (frame < trusted_range[1])


def apply_mask(
    frame: np.ndarray,
    static_valid: np.ndarray | None,
    trusted_range: tuple[float, float],
    extra_valid: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Mask one frame, returning int32 counts with -1 for invalid pixels (the numpy twin).

    Args:
        frame: raw counts (any numeric dtype), shape (ny, nx). Not modified
            (dxtbx may hand out its cached array).
        static_valid: True where the pixel is valid in every frame (None = all).
        trusted_range: dxtbx's (min, max); a pixel is valid when min < v < max.
        extra_valid: optional per-frame validity (e.g. goniometer shadow).
        out: optional int32 (ny, nx) array to write into.

    Returns:
        The int32 frame, and how many pixels the trusted range (and
        ``extra_valid``) masked beyond the static mask.
    """
    valid = valid_pixels(frame, trusted_range)
    if extra_valid is not None:
        valid &= extra_valid
    if static_valid is not None:
        n_dynamic = int(np.count_nonzero(static_valid)) - int(
            np.count_nonzero(valid & static_valid)
        )
        valid &= static_valid
    else:
        n_dynamic = valid.size - int(np.count_nonzero(valid))
    if out is None:
        out = np.empty(frame.shape, dtype=np.int32)
    # Same conversion as mdx2's int32 dataset write: a plain C cast.
    np.copyto(out, frame, casting="unsafe")
    np.copyto(out, MASKED_VALUE, where=~valid)
    return out, n_dynamic


def mask_frame(
    raw: np.ndarray,
    static_valid: np.ndarray | None,
    trusted_range: tuple[float, float],
    extra_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Mask a frame as dxtbx does: :func:`apply_mask`, in C when the frame fits.

    Returns:
        The int32 frame (-1 where masked) and the pixels the trusted range
        (and ``extra_valid``, e.g. a goniometer shadow) masked beyond the static mask.
    """
    c = lib.library()
    if c is None or not lib.takes_frame(raw, static_valid, extra_valid):
        return apply_mask(raw, static_valid, trusted_range, extra_valid)
    lo, hi = integer_bounds(trusted_range, raw.dtype)
    out = np.empty(raw.shape, dtype=np.int32)
    n_dynamic = c.mdx_mask_frame(
        lib.ptr(raw), lib.ptr(static_valid), raw.size, lo, hi, lib.ptr(out)
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
    ``out`` (uint8, (4, ny, nx)) is filled and returned when given.
    """
    planes = out if out is not None else np.empty((4, *raw.shape), dtype=np.uint8)
    c = lib.library()
    fits = lib.takes_frame(raw, static_valid, extra_valid) and planes.flags.c_contiguous
    if c is None or not fits:
        return mask_to_planes_numpy(raw, static_valid, trusted_range, extra_valid, planes)
    lo, hi = integer_bounds(trusted_range, raw.dtype)
    n_dynamic = c.mdx_mask_to_planes(
        lib.ptr(raw), lib.ptr(static_valid), raw.size, lo, hi, lib.ptr(planes)
    )
    return planes, int(n_dynamic)


def mask_to_planes_numpy(raw, static_valid, trusted_range, extra_valid=None, out=None):
    """The numpy twin of :func:`mask_to_planes`."""
    planes = out if out is not None else np.empty((4, *raw.shape), dtype=np.uint8)
    masked, n_dynamic = apply_mask(raw, static_valid, trusted_range, extra_valid)
    as_bytes = masked.astype("<i4", copy=False).view(np.uint8).reshape(*masked.shape, 4)
    for k in range(4):
        planes[k] = as_bytes[:, :, k]
    return planes, n_dynamic
