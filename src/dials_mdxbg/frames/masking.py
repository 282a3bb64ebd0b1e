"""Pixel masking, as dxtbx defines it, on plain numpy arrays.

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


def rectangles_mask(shape: tuple[int, int], rectangles) -> np.ndarray:
    """Boolean mask, True where pixels lie in any untrusted rectangle.

    Args:
        shape: (ny, nx) of the panel.
        rectangles: iterable of (x0, y0, x1, y1), half-open, as dxtbx's
            ``Panel.get_mask()`` returns them; clipped to the panel.

    Returns:
        (ny, nx) bool array, True = untrusted.
    """
    ny, nx = shape
    bad = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in rectangles:
        bad[max(y0, 0) : min(y1, ny), max(x0, 0) : min(x1, nx)] = True
    return bad


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
    """Mask one frame, returning int32 counts with -1 for invalid pixels.

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
