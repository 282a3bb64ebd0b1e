"""What a binning run says in its log: the per-phi table, usage and quality figures."""

from __future__ import annotations

import logging

from dials_mdxbg.model import BinnedMap

logger = logging.getLogger("dials.mdxbg.background")


def counts_text(counts: dict | None) -> str:
    """``{"untrusted_rectangles": 86145}`` -> ``86,145 untrusted rectangles`` (no reprs in logs)."""
    if not counts:
        return "none"
    return ", ".join(f"{int(n):,} {str(k).replace('_', ' ')}" for k, n in counts.items())


def log_table(binned: BinnedMap) -> None:
    """Per phi bin: mean, min, max (counts/s) and fraction of empty bins."""
    shape = " x ".join(map(str, binned.signal.shape))
    logger.info("Background map of %s (phi, y, x) bins, counts/s:", shape)
    logger.info("  %8s %10s %10s %10s %8s", "phi", "mean", "min", "max", "empty")
    for row in binned.phi_table():
        logger.info(
            "  %8.2f %10.3f %10.3f %10.3f %7.1f%%",
            row["phi"],
            row["mean"],
            row["min"],
            row["max"],
            100 * row["empty_fraction"],
        )


def log_usage(binned: BinnedMap, used: int, pixels: int) -> None:
    """Empty bins, and how many pixel values went into the map."""
    empty = binned.empty_bins
    if empty == binned.count.size:
        logger.warning(
            "Warning: every pixel is masked or outside valid_range; the map is all NaN",
            extra={"code": "all_nan"},
        )
    elif empty:
        logger.info("%d of %d bins have no valid pixel (NaN)", empty, binned.count.size)
    logger.info(
        "%d frames: %d of %d pixel values used (%.2f%%); the rest are masked (-1), "
        "outside valid_range or in the mask",
        binned.n_frames,
        used,
        pixels,
        100.0 * used / pixels,
    )


def log_quality(binned: BinnedMap, quality: dict) -> None:
    """Log the quality figures of :func:`dials_mdxbg.binning.summary.map_quality`."""
    disp = quality.get("dispersion")
    if disp and disp["bins"]:
        logger.info(
            "Dispersion (variance/mean of the counts in a bin, ~1 for flat Poisson "
            "background): median %.3f, 95th percentile %.3f, %.2f%% of bins above %g",
            disp["median"],
            disp["p95"],
            100 * disp["fraction_above"],
            disp["threshold"],
        )
        logger.info("  worst bins (phi, iy, ix: dispersion):")
        for w in disp["worst"][:5]:
            logger.info("    %8.2f %8.1f %8.1f: %.2f", w["phi"], w["iy"], w["ix"], w["dispersion"])
    if quality.get("single_phi_bin"):
        logger.warning(
            "Warning: the map has a single phi bin (bins=%s on %d frames): mdx2 cannot "
            "interpolate it (GridData.interpolate fails on an axis of size 1), so "
            "mdx2.correct --background will stop; use fewer frames per bin",
            ",".join(map(str, binned.bins)),
            binned.n_frames,
            extra={"code": "single_phi_bin"},
        )
    if quality.get("filled_bins"):
        filled = quality["filled_bins"]
        logger.info("fill_empty: %d empty bins filled from their neighbours", filled)
    if "auto" in quality:
        _log_auto(quality["auto"])
    if "heldout" in quality:
        _log_heldout(quality)
    empty = binned.empty_bins
    if "nan_pixels" in quality:
        if quality["nan_pixels"]:
            logger.warning(
                "Warning: %d valid pixel values (summed over the frames) get a NaN background "
                "under mdx2.correct's interpolation, next to %d empty bins; fill_empty=True "
                "fills them",
                quality["nan_pixels"],
                empty,
                extra={"code": "nan_pixels"},
            )
        else:
            logger.info("No valid pixel gets a NaN background under mdx2's interpolation")
    elif "nan_pixels_bound" in quality:
        logger.warning(
            "Warning: %d empty bins: mdx2.correct gives a NaN background to valid pixels "
            "next to them (up to %d pixel values of this sweep; diagnostics=True counts them "
            "exactly); fill_empty=True fills them",
            empty,
            quality["nan_pixels_bound"],
            extra={"code": "nan_pixels"},
        )


def _log_heldout(quality: dict) -> None:
    h = quality["heldout"]
    if h.get("model_error_percent") is None:
        return
    low, high = h["model_error_percent_2se"]
    logger.info(
        "Held-out error (even frames predict odd and back, mdx2's interpolation): "
        "model error %.4g counts/s = %.2f%% of the mean background %.4g counts/s "
        "(+-2 standard errors: %.2f-%.2f%%; %d pixel values)",
        h["model_error"],
        h["model_error_percent"],
        h["mean_rate"],
        low,
        high,
        h["pixels"],
    )
    logger.info("  %8s %12s %10s", "phi", "model err %", "NaN px")
    for row in quality["per_phi_bin"]:
        pct = row.get("model_error_percent")
        logger.info(
            "  %8.2f %12s %10d",
            row["phi"],
            "-" if pct is None else f"{pct:.2f}",
            row["nan_pixels"],
        )


def _log_auto(auto: dict) -> None:
    log_auto_candidates(auto)


def log_auto_candidates(auto: dict) -> None:
    """The bins=auto candidate table: corrected held-out score +- its standard error.

    ``auto`` is ``quality["auto"]`` (see docs/quality.md): chosen, how,
    distinguishable, candidates (rows with bins, score, score_se, ...).
    """
    logger.info(
        "bins=auto: corrected held-out score of each candidate, counts^2 per pixel-frame "
        "(* = chosen, + = within one standard error of the best)"
    )
    logger.info(
        "  %-12s %12s %10s %9s %12s %10s %8s %8s",
        "bins",
        "score",
        "+- se",
        "rms %",
        "vs best",
        "+- se",
        "filled",
        "disp med",
    )

    def fmt(value, spec):
        if value is None or value != value:
            return "-"
        return format(value, spec)

    for row in auto["candidates"]:
        mark = "*" if row["chosen"] else ("+" if row.get("within_one_se") else " ")
        logger.info(
            "%s %-12s %12s %10s %9s %12s %10s %8d %8s",
            mark,
            ",".join(str(b) for b in row["bins"]),
            fmt(row["score"], ".5g"),
            fmt(row["score_se"], ".3g"),
            fmt(row["score_percent"], ".2f"),
            fmt(row.get("difference"), ".4g"),
            fmt(row.get("difference_se"), ".3g"),
            row["filled_bins"],
            fmt(row.get("dispersion_median"), ".3f"),
        )
    chosen = ",".join(str(b) for b in auto["chosen"])
    logger.info("bins=auto chose %s: %s", chosen, auto["how"])
    if not auto["distinguishable"]:
        logger.info(
            "bins=auto: the data cannot distinguish the candidates marked + from the best "
            "(%s); the smoothest of them is kept",
            ",".join(str(b) for b in auto.get("best", auto["chosen"])),
        )
