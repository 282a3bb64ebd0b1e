"""The verdict on a binned map: is it ready for ``mdx2.correct --background``, and if not, why.

Computed once per map (:func:`map_verdict`, pure: the map, its quality dict and
the options), then shown in the console's last lines, the JSON summary and the
HTML report. Each reason names what to do about it.
"""

from __future__ import annotations

import numpy as np

from dials_mdxbg.model import BinnedMap

MOST_REJECTED = 0.5
"""valid_range rejecting more than this fraction of the unmasked values is a reason."""

PHI_TOLERANCE = 1e-6
"""Degrees: phi ranges that differ by rounding only are the same."""

IMPLAUSIBLE_ZERO = 10.0
"""Counts a bin would hold at the typical background (Poisson P(0) < 5e-5): reading 0 there
means the pixels saw no beam, rather than a sparse background's chance zero."""


def _reason(code: str, message: str, fix: str, blocking: bool = True) -> dict:
    return {"code": code, "message": message, "fix": fix, "blocking": blocking}


def nan_pixels(binned: BinnedMap, quality: dict) -> dict:
    """Valid pixel values with a NaN background under mdx2: ``{"count", "exact"}``.

    Exact when the diagnostics counted them, or when the map has no NaN at all
    (then none can be NaN); otherwise the bound of :func:`map_quality`.
    """
    if "nan_pixels" in quality:
        return {"count": int(quality["nan_pixels"]), "exact": True}
    if not np.isnan(binned.signal).any():
        return {"count": 0, "exact": True}
    if "nan_pixels_bound" in quality:
        return {"count": int(quality["nan_pixels_bound"]), "exact": False}
    from dials_mdxbg.binning.quality import nan_pixel_bound

    empty_as_nan = np.where(np.isnan(binned.signal), 0, binned.count)
    return {"count": nan_pixel_bound(empty_as_nan), "exact": False}


def rejected_by_valid_range(binned: BinnedMap, valid_range) -> tuple[int, int] | None:
    """(values outside valid_range, unmasked values) in the sampled frames, or None.

    From the value histogram of the run (:mod:`dials_mdxbg.binning.histogram`),
    when it was taken and a valid_range was given.
    """
    if valid_range is None or binned.values is None:
        return None
    hist = binned.values.as_report(tuple(valid_range), binned.n_frames)
    return int(hist["below"] + hist["above"]), int(hist["total"])


SAMPLE = 4096
"""Exposed bins per phi plane whose median rate and exposure are taken."""


def unexposed_bins(binned: BinnedMap) -> int:
    """Bins that read 0 counts/s where the typical background would give them counts.

    A bin's counts at its phi plane's median rate are ``rate * t * n`` (``n``
    pixel values, exposure ``t``). ``t`` is not in the map but follows from it
    exactly: ``t = dispersion * signal / (errors**2 * n)`` in any bin with
    spread (Poisson's dispersion 1 without the dispersion map). Bins expected to
    hold at least :data:`IMPLAUSIBLE_ZERO` counts are counted; a sparse
    background's chance zeros are not.
    """
    zero = (binned.count > 0) & (binned.signal == 0)
    n = 0
    for k in np.flatnonzero(zero.any(axis=(1, 2))):
        plane = binned.signal[k].ravel()
        exposed = np.flatnonzero(np.isfinite(plane) & (plane > 0))
        exposed = exposed[:: max(exposed.size // SAMPLE, 1)]  # a median needs no more
        count = binned.count[k].ravel()[exposed].astype(np.float64)
        disp = 1.0 if binned.dispersion is None else binned.dispersion[k].ravel()[exposed]
        with np.errstate(invalid="ignore", divide="ignore"):
            t = disp * plane[exposed] / (binned.errors[k].ravel()[exposed] ** 2.0 * count)
        t = t[np.isfinite(t) & (t > 0)]
        if not t.size:
            n += int(zero[k].sum())  # nothing to compare with: every zero counts
            continue
        rate = float(np.median(plane[exposed]))
        expected = binned.count[k] * rate * float(np.median(t))
        n += int(np.count_nonzero(zero[k] & (expected >= IMPLAUSIBLE_ZERO)))
    return n


def map_phi_extent(binned: BinnedMap) -> tuple[float, float] | None:
    """The phi range (degrees) the map's phi bins span, or None with a single bin."""
    phi = np.asarray(binned.phi, dtype=float)
    if phi.size < 2:
        return None
    half = abs(float(phi[1] - phi[0])) / 2
    lo, hi = float(min(phi[0], phi[-1])), float(max(phi[0], phi[-1]))
    return lo - half, hi + half


def map_verdict(
    binned: BinnedMap,
    quality: dict,
    valid_range=None,
    phi_range: tuple[float, float] | None = None,
) -> dict:
    """Whether ``mdx2.correct --background`` can use the map, with reasons and fixes.

    Args:
        binned: the map.
        quality: its quality dict (:func:`dials_mdxbg.binning.quality.map_quality`).
        valid_range: the run's valid_range, or None.
        phi_range: the phi range (degrees) of the data that will be corrected, if
            known; checked against the phi the map spans.

    Returns:
        ``{"ready_for_mdx2_correct": bool, "reasons": [{"code", "message", "fix",
        "blocking"}]}``; the map is ready when no reason is blocking. Bins of
        0 counts/s are advice only (mdx2 runs; the pixels are probably unexposed).
    """
    reasons = []
    n_phi = int(np.asarray(binned.phi).size)
    if n_phi < 2:
        reasons.append(
            _reason(
                "single_phi_bin",
                f"the map has a single phi bin ({binned.n_frames} frames, {binned.bins[0]} "
                "per bin): mdx2.correct cannot interpolate an axis of size 1 and stops",
                f"use fewer frames per phi bin (bins=N,{binned.bins[1]},{binned.bins[2]} with N "
                f"at most {max(binned.n_frames // 2, 1)}), or bins=auto",
            )
        )
    nan = nan_pixels(binned, quality)
    if nan["count"]:
        exact = "" if nan["exact"] else "up to "
        reasons.append(
            _reason(
                "nan_pixels",
                f"{exact}{nan['count']:,} valid pixel values (summed over the frames) get a NaN "
                f"background under mdx2's interpolation, next to {binned.empty_bins:,} empty bins",
                "fill_empty=True fills the empty bins from their neighbours; or use larger bins"
                + ("" if nan["exact"] else " (diagnostics=True counts the pixels exactly)"),
            )
        )
    extent = map_phi_extent(binned)
    if phi_range is not None and extent is not None:
        lo, hi = sorted(float(p) for p in phi_range)
        if lo < extent[0] - PHI_TOLERANCE or hi > extent[1] + PHI_TOLERANCE:
            reasons.append(
                _reason(
                    "phi_not_covered",
                    f"the map spans phi {extent[0]:.2f} to {extent[1]:.2f} deg but the data run "
                    f"from {lo:.2f} to {hi:.2f} deg: mdx2 repeats the edge bins beyond the map",
                    "bin a background sweep that covers the data's phi range",
                )
            )
    rejected = rejected_by_valid_range(binned, valid_range)
    if rejected is not None and rejected[1] and rejected[0] > MOST_REJECTED * rejected[1]:
        lo, hi = valid_range
        reasons.append(
            _reason(
                "valid_range_rejects_most",
                f"valid_range={lo},{hi} rejects {100 * rejected[0] / rejected[1]:.0f}% of the "
                "unmasked pixel values (sampled frames): the map is built from the few left",
                "widen valid_range to hold the background (the report's histogram shows the "
                "values), or leave it unset",
            )
        )
    zero = unexposed_bins(binned)
    if zero:
        reasons.append(
            _reason(
                "zero_count_bins",
                f"{zero:,} bins read 0 counts/s where the typical background would give them "
                f"{IMPLAUSIBLE_ZERO:g} counts or more: unexposed detector edges or a shadow",
                "mask them with dials.generate_mask (e.g. untrusted.rectangle=...) and give the "
                "mask as frames.mask= (one-step) or mask= (dials.mdx_import)",
                blocking=False,
            )
        )
    ready = not any(r["blocking"] for r in reasons)
    return {"ready_for_mdx2_correct": ready, "reasons": reasons}


def combined(verdicts: list[tuple[int | None, dict]]) -> dict:
    """One verdict of several maps (``(imageset index, verdict)``): ready when all are."""
    if len(verdicts) == 1:
        return verdicts[0][1]
    reasons = []
    for index, verdict in verdicts:
        for r in verdict["reasons"]:
            reasons.append({**r, "message": f"imageset {index}: {r['message']}"})
    ready = all(v["ready_for_mdx2_correct"] for _, v in verdicts)
    return {"ready_for_mdx2_correct": ready, "reasons": reasons}


def verdict_lines(verdict: dict) -> list[str]:
    """The console's last lines: the verdict, then each reason with its fix."""
    ready = verdict["ready_for_mdx2_correct"]
    lines = ["Verdict: " + ("ready for mdx2.correct" if ready else "NOT ready for mdx2.correct")]
    for r in verdict["reasons"]:
        kind = "  - " if r["blocking"] else "  - (advice) "
        lines.append(f"{kind}{r['message']}; fix: {r['fix']}")
    return lines
