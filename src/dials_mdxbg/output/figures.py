"""The report's plotly figures and table rows, as plain JSON-ready dicts (no plotly objects)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

COLOUR_PERCENTILES = (1.0, 99.0)
"""The shared colour scale: these percentiles of the finite values (as the PNG)."""


def colour_range(values: np.ndarray) -> tuple[float, float]:
    """Shared colour scale: :data:`COLOUR_PERCENTILES` of the finite values."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, COLOUR_PERCENTILES))
    if not hi > lo:
        hi = lo + (abs(lo) or 1.0)
    return lo, hi


def log_colour_scale(values: np.ndarray) -> dict | None:
    """A log10 colour scale over the positive finite values: range and labelled ticks.

    The range is :data:`COLOUR_PERCENTILES` of log10(values), so a long tail
    (a few bins 100x the median) does not push everything else into one colour.
    Ticks are at 1, 2, 5 x 10^k inside the range (round values evenly spaced when
    the range spans less), labelled in the values' units.
    """
    positive = values[np.isfinite(values) & (values > 0)]
    if not positive.size:
        return None
    lo, hi = (float(v) for v in np.percentile(np.log10(positive), COLOUR_PERCENTILES))
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    ticks = []
    for k in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            t = math.log10(m) + k
            if lo <= t <= hi:
                ticks.append(t)
    if len(ticks) < 3:  # less than a decade or so: round values, evenly spaced in value
        a, b = 10**lo, 10**hi
        step = 10 ** math.floor(math.log10((b - a) / 4))
        step *= next(m for m in (1, 2, 5, 10) if (b - a) / (step * m) <= 6)
        values = [v for v in np.arange(math.ceil(a / step) * step, b, step) if v > 0]
        digits = max(0, -math.floor(math.log10(step)))
        return {
            "range": (lo, hi),
            "tickvals": [math.log10(v) for v in values],
            "ticktext": [f"{v:.{digits}f}" for v in values],
        }
    return {
        "range": (lo, hi),
        "tickvals": ticks,
        "ticktext": [f"{10**t:.3g}" for t in ticks],
    }


def histogram_rejection(histogram: Mapping[str, Any]) -> dict[str, float]:
    """Pixels below / inside / above ``valid_range``, as counts and fractions.

    Exact ``below``/``above``/``total`` in ``histogram`` win; otherwise a bin
    counts on the side its centre lies (pixel values are integers and the
    edges half-integers, so no bin straddles an integer limit).
    """
    edges = np.asarray(histogram["edges"], dtype=float)
    counts = np.asarray(histogram["counts"], dtype=float)
    centres = 0.5 * (edges[:-1] + edges[1:])
    total = float(histogram.get("total", counts.sum()))
    vr = histogram.get("valid_range")
    if vr is None:
        below = above = 0.0
    else:
        lo, hi = vr
        below = float(histogram.get("below", counts[centres < lo].sum()))
        above = float(histogram.get("above", counts[centres > hi].sum()))
    frac = (lambda n: n / total) if total else (lambda n: 0.0)
    return {
        "total": total,
        "below": below,
        "above": above,
        "inside": total - below - above,
        "below_fraction": frac(below),
        "above_fraction": frac(above),
    }


def masked_rows(summary: Mapping[str, Any]) -> list[dict]:
    """Rows ``{"reason", "pixels", "fraction"}`` of ``summary["masked"]``.

    ``summary["masked"]`` maps a reason to a pixel count; the fraction is of
    ``summary["detector_pixels"]`` (or of ny*nx from ``summary["image_size"]``).
    """
    masked = summary.get("masked") or {}
    n = summary.get("detector_pixels")
    if n is None and summary.get("image_size"):
        ny, nx = summary["image_size"]
        n = ny * nx
    rows = []
    for reason, pixels in masked.items():
        rows.append(
            {
                "reason": str(reason),
                "pixels": int(pixels),
                "fraction": (pixels / n) if n else float("nan"),
            }
        )
    return rows


# --------------------------------------------------------------------------- figures


def _finite_or_none(values: Sequence[float] | np.ndarray) -> list:
    out = []
    for v in np.asarray(values, dtype=float).ravel().tolist():
        out.append(v if math.isfinite(v) else None)
    return out


def histogram_figure(histogram: Mapping[str, Any], rejection: Mapping[str, float]) -> dict:
    edges = np.asarray(histogram["edges"], dtype=float)
    counts = np.asarray(histogram["counts"], dtype=float)
    centres = 0.5 * (edges[:-1] + edges[1:])
    widths = np.diff(edges)
    data = [
        {
            "type": "bar",
            "x": _finite_or_none(centres),
            "y": _finite_or_none(counts),
            "width": _finite_or_none(widths),
            "marker": {"color": "#4c72b0", "line": {"width": 0}},
            "hovertemplate": "value %{x}<br>%{y} pixels<extra></extra>",
            "name": "pixels",
        }
    ]
    shapes, annotations = [], []
    vr = histogram.get("valid_range")
    overflow = int(histogram.get("overflow") or 0)
    cap = float(histogram.get("cap", edges[-1] + 0.5))
    x_range = _histogram_range(edges, counts, vr, overflow)
    if overflow:
        # The values past the unit bins, as one bar of their own at the right end.
        width = max(0.04 * (x_range[1] - x_range[0]), 1.0)
        x_range = (x_range[0], max(x_range[1], cap) + 1.5 * width)
    if vr is not None:
        lo, hi = (float(v) for v in vr)
        left, right = min(float(edges[0]), x_range[0]), max(float(edges[-1]), x_range[1])
        for x0, x1, frac, side in (
            (left, lo, rejection["below_fraction"], "below"),
            (hi, right, rejection["above_fraction"], "above"),
        ):
            if x1 > x0:
                shapes.append(
                    {
                        "type": "rect",
                        "xref": "x",
                        "yref": "paper",
                        "x0": x0,
                        "x1": x1,
                        "y0": 0,
                        "y1": 1,
                        "fillcolor": "rgba(200,60,60,0.12)",
                        "line": {"width": 0},
                        "layer": "below",
                    }
                )
        # Labels above the plot, pointing inwards (right of the lower limit, left of the upper).
        for x, frac, side, anchor in (
            (lo, rejection["below_fraction"], "below", "left"),
            (hi, rejection["above_fraction"], "above", "right"),
        ):
            shapes.append(
                {
                    "type": "line",
                    "xref": "x",
                    "yref": "paper",
                    "x0": x,
                    "x1": x,
                    "y0": 0,
                    "y1": 1,
                    "line": {"color": "#c03c3c", "width": 2, "dash": "dash"},
                }
            )
            annotations.append(
                {
                    "xref": "x",
                    "yref": "paper",
                    "x": x,
                    "y": 1.0,
                    "xanchor": anchor,
                    "yanchor": "bottom",
                    "showarrow": False,
                    "text": f" {100 * frac:.3g}% {side} ",
                    "font": {"color": "#c03c3c"},
                }
            )
    if overflow:
        data.append(
            {
                "type": "bar",
                "x": [max(x_range[1] - width, cap)],
                "y": [overflow],
                "width": [width],
                "marker": {"color": "#dd8452", "line": {"width": 0}},
                "hovertemplate": f"values of {cap:g} or more<br>%{{y}} pixels<extra></extra>",
                "name": f">= {cap:g}",
            }
        )
        total = rejection["total"] or 1.0
        annotations.append(
            {
                "xref": "x",
                "yref": "y",
                "x": max(x_range[1] - width, cap),
                "y": math.log10(max(overflow, 1)),
                "xanchor": "right",
                "yanchor": "bottom",
                "showarrow": False,
                "text": f"≥ {cap:g}: {100 * overflow / total:.3g}%",
                "font": {"color": "#b35806"},
            }
        )
    layout = {
        "height": 380,
        "margin": {"l": 70, "r": 20, "t": 55, "b": 50},  # room for the labels under the modebar
        "xaxis": {"title": {"text": "pixel value (counts)"}, "range": list(x_range)},
        "yaxis": {"title": {"text": "pixels"}, "type": "log"},
        "bargap": 0,
        "shapes": shapes,
        "annotations": annotations,
        "showlegend": False,
    }
    return {"data": data, "layout": layout}


def _histogram_range(edges, counts, valid_range, overflow: int) -> tuple[float, float]:
    """The x range that shows the data: 0.1th to 99.9th percentile, and valid_range's limits."""
    total = counts.sum() + overflow
    lo, hi = float(edges[0]), float(edges[-1])
    if total > 0:
        cumulative = np.cumsum(counts)
        first = int(np.searchsorted(cumulative, 0.001 * total, side="right"))
        last = int(np.searchsorted(cumulative, 0.999 * total))
        lo = float(edges[min(first, len(counts) - 1)])
        hi = float(edges[min(last + 1, len(edges) - 1)])
    if valid_range is not None:
        span = max(float(valid_range[1]) - float(valid_range[0]), 1.0)
        lo = min(lo, float(valid_range[0]) - 0.05 * span)
        hi = max(hi, float(valid_range[1]) + 0.05 * span)
    lo = max(lo, float(edges[0]))
    hi = min(hi, float(edges[-1])) if not overflow else hi
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def masked_figure(rows: list[dict]) -> dict:
    rows = [r for r in rows if math.isfinite(r["fraction"])]
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "y": [r["reason"] for r in rows],
            "x": [100 * r["fraction"] for r in rows],
            "customdata": [r["pixels"] for r in rows],
            "hovertemplate": "%{y}<br>%{x:.3g}% of the detector<br>%{customdata} pixels"
            "<extra></extra>",
            "marker": {"color": "#dd8452"},
        }
    ]
    layout = {
        "height": 80 + 36 * max(len(rows), 1),
        "margin": {"l": 200, "r": 20, "t": 10, "b": 45},
        "xaxis": {"title": {"text": "% of detector pixels"}, "rangemode": "tozero"},
        "yaxis": {"automargin": True, "autorange": "reversed"},
        "showlegend": False,
    }
    return {"data": data, "layout": layout}


def lines_figure(spec: Mapping[str, Any]) -> dict:
    """A plot of series: lines, or points with error bars.

    A series may carry ``error`` (symmetric) or ``error_plus``/``error_minus``,
    ``mode`` (plotly's, e.g. ``"markers"``), ``symbol`` and ``color``; the spec
    ``x_ticks`` = [(position, label)] (e.g. d labels on a 1/d^2 axis) and
    ``x_type`` (``"category"`` for candidate names, in the order of ``x_categories``).
    """
    data = []
    for s in spec["series"]:
        trace = {
            "type": "scatter",
            "mode": s.get("mode", "lines+markers"),
            "name": str(s.get("name", "")),
            "x": list(s["x"]) if spec.get("x_type") == "category" else _finite_or_none(s["x"]),
            "y": _finite_or_none(s["y"]),
        }
        marker = {k: s[k] for k in ("symbol", "color", "size") if s.get(k) is not None}
        if marker:
            trace["marker"] = marker
        if s.get("error") is not None:
            trace["error_y"] = {"type": "data", "array": _finite_or_none(s["error"])}
        elif s.get("error_plus") is not None:
            trace["error_y"] = {
                "type": "data",
                "symmetric": False,
                "array": _finite_or_none(s["error_plus"]),
                "arrayminus": _finite_or_none(s.get("error_minus", s["error_plus"])),
            }
        if s.get("customdata") is not None:
            trace["customdata"] = _finite_or_none(s["customdata"])
        if s.get("hovertemplate"):
            trace["hovertemplate"] = s["hovertemplate"]
        data.append(trace)
    xaxis: dict = {"title": {"text": spec.get("x_label", "")}}
    if spec.get("x_type"):
        xaxis["type"] = spec["x_type"]
    if spec.get("x_categories"):
        xaxis["categoryorder"] = "array"
        xaxis["categoryarray"] = [str(c) for c in spec["x_categories"]]
    if spec.get("x_ticks"):
        xaxis["tickmode"] = "array"
        xaxis["tickvals"] = [float(t) for t, _ in spec["x_ticks"]]
        xaxis["ticktext"] = [str(label) for _, label in spec["x_ticks"]]
    if spec.get("x_range"):
        xaxis["range"] = [float(v) for v in spec["x_range"]]
    layout = {
        "height": 380,
        "margin": {"l": 70, "r": 20, "t": 20, "b": 50},
        "xaxis": xaxis,
        "yaxis": {
            "title": {"text": spec.get("y_label", "")},
            "type": "log" if spec.get("log_y") else "linear",
        },
        "showlegend": len(data) > 1,
    }
    return {"data": data, "layout": layout}
