"""Figures of a binned map's quality: dispersion per bin, NaN pixels, flags for the summary.

Pure: computed from the map alone, logged elsewhere (:mod:`dials_mdxbg.output.tables`).
"""

from __future__ import annotations

import numpy as np

from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.binning.sums import BinSums
from dials_mdxbg.model import BinnedMap


def dispersion(sums: BinSums) -> np.ndarray:
    """Variance-to-mean ratio of each bin's valid counts (NaN with < 2 counts or mean <= 0).

    ``var = (sum c^2 - (sum c)^2 / n) / (n - 1)``, ``mean = sum c / n``: about 1
    for Poisson counts of a background flat within the bin; larger when the bin
    smears structure (rings, the shadow's edge) or holds outliers.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        n = sums.count.astype(np.float64)
        total = sums.total.astype(np.float64)
        mean = total / n
        var = (sums.total_sq - total * mean) / (n - 1)
        out = var / mean
    out[(sums.count < 2) | ~(mean > 0)] = np.nan
    return out


def dispersion_summary(
    vmr: np.ndarray,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    threshold: float,
    n_worst: int = 10,
) -> dict:
    """Median, 95th percentile, fraction above ``threshold`` and the worst bins."""
    finite = np.isfinite(vmr)
    values = vmr[finite]
    summary = {"bins": int(values.size), "threshold": float(threshold)}
    if not values.size:
        return {**summary, "median": None, "p95": None, "fraction_above": None, "worst": []}
    flat = np.flatnonzero(finite.ravel())
    values_flat = vmr.ravel()[flat]
    if values_flat.size > n_worst:  # the top n only: a full sort of a fine map is slow
        top = np.argpartition(values_flat, values_flat.size - n_worst)[-n_worst:]
    else:
        top = np.arange(values_flat.size)
    order = flat[top[np.argsort(values_flat[top], kind="stable")[::-1]]]
    worst = []
    for i in order:
        k, j, m = np.unravel_index(i, vmr.shape)
        worst.append(
            {
                "phi": float(axes[0][k]),
                "iy": float(axes[1][j]),
                "ix": float(axes[2][m]),
                "dispersion": float(vmr[k, j, m]),
            }
        )
    return {
        **summary,
        "median": float(np.median(values)),
        "p95": float(np.percentile(values, 95)),
        "fraction_above": float(np.mean(values > threshold)),
        "worst": worst,
    }


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
