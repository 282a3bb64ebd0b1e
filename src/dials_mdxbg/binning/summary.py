"""The figures of a finished map, for the log, the report and the JSON summary.

Pure: computed from the map alone, logged elsewhere (:mod:`dials_mdxbg.output.tables`).
"""

from __future__ import annotations

import numpy as np

from dials_mdxbg.binning.diagnostics import dispersion_summary
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.model import BinnedMap


def nan_pixel_bound(count: np.ndarray) -> int:
    """Upper bound of the valid pixel values that get a NaN background under mdx2.

    A pixel's interpolation stencil lies within one bin of its own bin on each
    axis, so only pixels of bins next to (or at) an empty bin can be poisoned.
    """
    empty = count == 0
    near = empty.copy()
    for axis in range(3):
        shifted = np.zeros_like(near)
        lead = [slice(None)] * 3
        src = list(lead)
        src[axis], lead[axis] = slice(1, None), slice(None, -1)
        shifted[tuple(lead)] = near[tuple(src)]
        shifted[tuple(src)] |= near[tuple(lead)]
        near |= shifted
    return int(count[near].sum())


def map_quality(binned: BinnedMap, options: BinOptions) -> dict:
    """The map's quality figures (JSON-ready): diagnostics, dispersion, flags, NaN pixels."""
    out: dict = dict(binned.quality)
    if binned.dispersion is not None:
        out["dispersion"] = dispersion_summary(
            binned.dispersion, (binned.phi, binned.iy, binned.ix), options.dispersion_threshold
        )
    if binned.phi.size < 2:
        out["single_phi_bin"] = True
    if binned.filled is not None:
        out["filled_bins"] = int(binned.filled.sum())
    if "nan_pixels" not in out and binned.empty_bins and binned.filled is None:
        out["nan_pixels_bound"] = nan_pixel_bound(binned.count)
    return out
