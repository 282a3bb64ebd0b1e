"""Figures of a binned map's quality that need only its sums: dispersion per bin."""

from __future__ import annotations

import numpy as np

from dials_mdxbg.binning.sums import BinSums


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
