"""Detector gain (counts per photon) for the variance terms of the held-out score.

Photon counters (pixel-array detectors) count photons: gain 1. An integrating
detector (a CCD) reports ``g`` counts per photon, so a count's variance is
``g`` times its mean; ``g`` is estimated as the median variance-to-mean ratio
(dispersion) of the smallest bins, where the background's own structure adds
least to the spread.
"""

from __future__ import annotations

import math

PHOTON_COUNTING_SENSORS = ("SENSOR_PAD",)
"""dxtbx panel types that count photons."""


def is_photon_counter(sensor_type: str | None) -> bool | None:
    """True for a dxtbx sensor type that counts photons, False for others, None if unknown."""
    if not sensor_type:
        return None
    return str(sensor_type).upper() in PHOTON_COUNTING_SENSORS


def median_bias(values_per_bin: int) -> float:
    """Median of a Poisson bin's dispersion over its mean: that of chi2(n-1)/(n-1).

    The sample variance of ``n`` values has ``n - 1`` degrees of freedom, and the
    median of chi2(k)/k is below 1 (0.91 for k = 7), so a median dispersion is
    divided by it.
    """
    from scipy.stats import chi2

    k = max(int(values_per_bin) - 1, 1)
    return float(chi2.median(k) / k)


def choose_gain(
    given: float | None,
    photon_counter: bool | None,
    small_bin_dispersion: float | None,
    values_per_bin: int = 0,
) -> tuple[float, str]:
    """The gain and how it was set (for the log).

    Args:
        given: the user's value (None: automatic).
        photon_counter: whether the detector counts photons (None: unknown).
        small_bin_dispersion: median dispersion of the smallest candidate's bins.
        values_per_bin: pixel values in one of those bins (for the median's bias; 0: none).
    """
    if given is not None:
        return float(given), "given"
    if photon_counter:
        return 1.0, "photon-counting detector"
    if small_bin_dispersion is None or not math.isfinite(small_bin_dispersion):
        return 1.0, "no dispersion to estimate it from"
    what = "integrating detector" if photon_counter is False else "detector type unknown"
    bias = median_bias(values_per_bin) if values_per_bin > 1 else 1.0
    return max(float(small_bin_dispersion) / bias, 1e-6), (
        f"{what}: median dispersion of the smallest candidate's bins / {bias:.3f}"
    )
