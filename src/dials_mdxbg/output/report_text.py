"""The report's words: summary rows, verdict and warnings, the next command, per-plot help.

Pure functions of plain dicts; :mod:`dials_mdxbg.output.report` puts them on the page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MDX2_INPUTS = ("geometry.nxs", "integrated.nxs")
"""mdx2.correct's two positional files, as the mdx2 tutorial names them."""

HELP = {
    "summary": "What was binned and how. 'bins' is the size of one map bin: frames (phi) "
    "by pixels in y (rows, slow axis) by pixels in x (columns, fast axis). The map file is "
    "what mdx2.correct reads with --background.",
    "map": "The background in counts/s per pixel, one image per phi bin, on one colour "
    "scale for every bin (1st-99th percentile of the values, so a few hot bins do not "
    "darken the rest). Move the slider (or click a small image) to change phi bin; hover a "
    "bin for its centre, value, standard error and the number of pixel values averaged. "
    "Blank bins had no valid pixel: mdx2.correct gives NaN background around them. Bins "
    "hatched white were filled from their neighbours by fill_empty.",
    "masked": "Pixels left out of every bin, by reason, as a share of the detector. A large "
    "share of 'trusted range or shadow' usually means overloads or a beamstop shadow.",
    "histogram": "How many pixel values of the sampled frames have each value (log scale). "
    "The background should sit well inside valid_range (the dashed lines): values outside "
    "it are ignored, so a background above the upper limit is mostly thrown away. The "
    "orange bar at the right counts the values past the histogram's last value.",
    "per_phi": "Mean, smallest and largest bin value of each phi bin (counts/s), and the "
    "share of its bins left empty. Jumps between neighbouring phi bins point to a change of "
    "exposure or a shadow moving through the sweep.",
    "dispersion": "Variance-to-mean ratio of the pixel values in each bin, on a log colour "
    "scale: about 1 where the background is flat within the bin (Poisson counts), larger "
    "where a bin mixes different levels (rings, the beamstop's edge, diffuse streaks) or "
    "holds outliers. Large values everywhere suggest smaller bins.",
    "heldout_error": "The map made from the even frames predicts the odd frames, and back, "
    "with mdx2's interpolation; the error is what remains after removing the counting "
    "noise, as a percentage of the mean background. Points are phi bins; bars are +-2 "
    "standard errors. Lower is better; compare maps binned differently on the same data.",
    "bins_auto": "Every candidate bin size binned and scored on held-out frames; the chosen "
    "one (marked *) has the lowest score, ties going to the larger bins. A candidate whose "
    "score is within its error bars of the chosen one is about as good.",
    "bins_auto_scores": "Held-out score of each candidate (lower is better) with +-2 "
    "standard errors; the chosen candidate is the filled star.",
    "radial_profiles": "Mean background per phi bin against resolution. The axis is linear "
    "in 1/d^2 (shells of equal width there, as in DIALS' resolution plots) and labelled in d "
    "(Angstrom), like the profile PNG. Rings show up as bumps; a steep rise at low "
    "resolution is usually the beamstop or air scatter.",
}
"""The "?" text of each plot, keyed by section name."""


def _fmt_int(value: Any) -> str:
    return f"{int(value):,}"


def size_text(ny: int, nx: int) -> str:
    """An image size with its axes named: ``1024 × 1024 px (y × x)``."""
    return f"{int(ny)} × {int(nx)} px (y × x)"


def bins_text(bins: Sequence[int]) -> str:
    """A bin size with its units: ``10 frames × 20 × 20 px (y × x)``."""
    f, y, x = (int(v) for v in bins)
    return f"{f} frame{'s' if f != 1 else ''} × {y} × {x} px (y × x)"


def shape_text(shape: Sequence[int]) -> str:
    """A map shape: ``5 phi × 52 × 52 bins (y × x)``."""
    p, y, x = (int(v) for v in shape)
    return f"{p} phi × {y} × {x} bins (y × x)"


def empty_text(empty: int, total: int, filled: int | None) -> str:
    """Empty bins, or what fill_empty did: filled bins are not empty any more."""
    if filled:
        left = f"{empty:,} left empty" if empty else "none left empty"
        return f"{filled:,} of {total:,} filled by fill_empty (hatched), {left}"
    return f"{empty:,} of {total:,}"


def summary_rows(summary: Mapping[str, Any], fmt) -> list[tuple[str, str]]:
    """The run summary's (label, text) rows; library versions are listed apart."""
    rows: list[tuple[str, str]] = []
    special = {
        "image_size": ("image size", lambda v: size_text(*v)),
        "bins": ("bins", bins_text),
        "map_shape": ("map", shape_text),
    }
    keys = [
        ("input", "input"),
        ("frames", "frames"),
        ("image_size", None),
        ("bins", None),
        ("bins_how", "bins chosen by"),
        ("map_shape", None),
        ("valid_range", "valid_range (counts)"),
        ("estimator", "estimator"),
        ("empty_bins", "empty bins"),
        ("output", "map file"),
    ]
    for key, label in keys:
        value = summary.get(key)
        if value is None:
            continue
        if label is None:
            label, text = special[key]
            try:
                rows.append((label, text(value)))
            except (TypeError, ValueError):  # not the usual 2/3 numbers: show it as given
                rows.append((label, fmt(value)))
        else:
            rows.append((label, fmt(value)))
    return rows


def version_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(library, version) rows, shown folded away."""
    return [(str(k), str(v)) for k, v in (summary.get("versions") or {}).items()]


def next_command(map_path: str | None) -> str | None:
    """The mdx2 step that uses the map (``mdx2.correct`` with the map as background)."""
    if not map_path:
        return None
    return f"mdx2.correct {' '.join(MDX2_INPUTS)} --background {map_path}"


def verdict_view(verdict: Mapping[str, Any] | None) -> dict | None:
    """The verdict as the page shows it: ready or not, and each reason with its fix."""
    if not verdict:
        return None
    reasons = [
        {
            "code": str(r.get("code", "")),
            "message": str(r.get("message", "")),
            "fix": str(r["fix"]) if r.get("fix") else "",
        }
        for r in verdict.get("reasons") or []
    ]
    return {"ready": bool(verdict.get("ready_for_mdx2_correct")), "reasons": reasons}


def warnings_view(warnings: Sequence[Mapping[str, Any]] | None) -> list[dict]:
    """Every warning the run gave, as {code, message}."""
    return [
        {"code": str(w.get("code", "")), "message": str(w.get("message", ""))}
        for w in warnings or []
    ]


def percentile_of_counts(counts: np.ndarray, overflow: int, q: float) -> int | None:
    """The ``q``-th percentile of integer values given as unit-bin counts (0, 1, ...).

    Values counted in ``overflow`` (at or past ``len(counts)``) answer
    ``len(counts)``, read "at least that". None when nothing was counted.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum()) + int(overflow)
    if total <= 0:
        return None
    rank = math.ceil(q / 100.0 * total)
    cumulative = np.cumsum(counts)
    i = int(np.searchsorted(cumulative, max(rank, 1)))
    return min(i, len(counts))


def values_text(counts: np.ndarray, overflow: int, cap: int | None = None, valid_range=None) -> str:
    """Where the sampled values sit: median and 1st/99th percentile, in counts.

    ``counts`` are of the values 0, 1, ...; ``overflow`` counts values of
    ``cap`` (default ``len(counts)``) or more, whose exact value is unknown.
    A median outside ``valid_range`` is said plainly: most of the background is
    thrown away.
    """
    cap = len(counts) if cap is None else int(cap)
    parts = []
    for name, q in (("1st percentile", 1), ("median", 50), ("99th percentile", 99)):
        v = percentile_of_counts(counts, overflow, q)
        if v is None:
            return ""
        parts.append(f"{name} {'≥ ' + _fmt_int(cap) if v >= len(counts) else _fmt_int(v)}")
    out = "Sampled values: " + ", ".join(parts) + " counts."
    median = percentile_of_counts(counts, overflow, 50)
    if valid_range is not None and median is not None:
        lo, hi = (int(v) for v in valid_range)
        if median > hi:
            out += (
                f" Most values are above the upper limit of valid_range ({hi}) and are ignored: if "
                "that is the background, widen valid_range."
            )
        elif median < lo:
            out += f" Most values are below the lower limit of valid_range ({lo}) and are ignored."
    return out
