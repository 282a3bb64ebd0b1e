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


def dials_mask_problem(path: str, detector, param: str) -> str | None:
    """Why a dials.generate_mask mask cannot apply to ``detector``, or None.

    A mask made for another detector (another number of panels, or panels of
    another size) is named with its parameter and both geometries. A file
    that is no mask at all is left to the reader, which says so.

    Args:
        path: the mask file (a pickled tuple of flex.bool, one per panel).
        detector: the dxtbx detector of the experiments.
        param: the parameter that named it (``mask`` or ``frames.mask``).
    """
    import os
    import pickle

    from dials_mdxbg.frames.precheck import missing_input_problem

    if not os.path.exists(path):
        return f"{param}={missing_input_problem(path) or f'{path}: no such file'}"
    try:
        with open(path, "rb") as fh:
            mask = pickle.load(fh)
        panels = mask if isinstance(mask, (tuple, list)) else (mask,)
        shapes = [tuple(int(n) for n in (p.all() if hasattr(p, "all") else np.shape(p)))
                  for p in panels]
    except Exception:  # unreadable or not a mask: the reader names it
        return None
    wanted = [tuple(reversed(panel.get_image_size())) for panel in detector]
    if shapes == wanted or any(len(s) != 2 for s in shapes):
        return None
    return (
        f"{param}={path} was made for another detector: {_panels(shapes)}, the experiments' "
        f"detector has {_panels(wanted)}; make the mask for these experiments "
        "(dials.generate_mask)"
    )


def _panels(shapes: list[tuple[int, ...]]) -> str:
    """'1 panel of 487 x 195 pixels', as dxtbx gives sizes (fast x slow)."""
    sizes = sorted({f"{nx} x {ny}" for ny, nx in shapes})
    what = f"{len(shapes)} panel{'s' if len(shapes) != 1 else ''}"
    return f"{what} of {' or '.join(sizes)} pixels" if sizes else "no panels"
