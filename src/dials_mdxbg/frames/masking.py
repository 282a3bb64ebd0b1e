"""The static part of dxtbx's pixel mask on plain arrays (per frame: native.mask_kernels)."""

from __future__ import annotations

import numpy as np


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
