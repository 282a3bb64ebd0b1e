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


def choose_gain(
    given: float | None, photon_counter: bool | None, small_bin_dispersion: float | None
) -> tuple[float, str]:
    """The gain and how it was set (for the log).

    Args:
        given: the user's value (None: automatic).
        photon_counter: whether the detector counts photons (None: unknown).
        small_bin_dispersion: median dispersion of the smallest candidate's bins.
    """
    if given is not None:
        return float(given), "given"
    if photon_counter:
        return 1.0, "photon-counting detector"
    if small_bin_dispersion is None or not math.isfinite(small_bin_dispersion):
        return 1.0, "no dispersion to estimate it from"
    what = "integrating detector" if photon_counter is False else "detector type unknown"
    return max(float(small_bin_dispersion), 1e-6), (
        f"{what}: median dispersion of the smallest candidate's bins"
    )
