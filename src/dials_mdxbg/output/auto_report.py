"""The report's bins=auto and held-out sections: why these bins, with scores and error bars.

The candidate rows of ``quality["auto"]["candidates"]`` carry either
``score``/``score_se``/``score_percent`` or the older
``model_error_sq``/``model_error_sq_se``/``model_error_percent``; both read
the same here (lower is better, standard error of the same quantity).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

SCORE_KEYS = (
    ("score", "score_se", "score_percent", "score", "score %"),
    ("model_error_sq", "model_error_sq_se", "model_error_percent",
     "model error² ((counts/s)²)", "model error %"),
)  # fmt: skip
"""(value, standard error, percent, value column, percent column) of each row layout."""

DEFAULT_HOW = (
    "bins=auto binned the sweep with every candidate bin size, scored each on held-out "
    "frames (the even frames' map predicts the odd frames and back, with mdx2's "
    "interpolation) and chose the lowest score; scores equal to a relative 1e-9 tie, and a "
    "tie goes to the larger bins. Without fill_empty, a candidate whose map leaves valid "
    "pixels a NaN background is passed over when another does not."
)
"""Said when the auto result carries no ``how`` sentence of its own."""


def _keys(rows: list[Mapping[str, Any]]) -> tuple[str, str, str, str, str]:
    for keys in SCORE_KEYS:
        if any(r.get(keys[0]) is not None for r in rows):
            return keys
    return SCORE_KEYS[-1]


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _with_se(value: Any, se: Any) -> str:
    v, e = _num(value), _num(se)
    if v is None:
        return "–"
    return f"{v:.4g} ± {e:.2g}" if e is not None else f"{v:.4g}"


def _label(bins) -> str:
    return ",".join(str(int(b)) for b in bins)


def _close_call(rows: list, chosen: Mapping[str, Any], value: str, se: str) -> str:
    """How many other candidates score within 2 standard errors of the chosen one."""
    best = _num(chosen.get(value))
    if best is None:
        return ""
    close = 0
    for r in rows:
        v, e = _num(r.get(value)), _num(r.get(se)) or 0.0
        e_best = _num(chosen.get(se)) or 0.0
        if r is not chosen and v is not None and v - best <= 2 * math.hypot(e, e_best):
            close += 1
    if not close:
        return " No other candidate comes within 2 standard errors of it."
    return (
        f" {close} other candidate{'s' if close != 1 else ''} score within 2 standard errors "
        "of it: as good within the noise of this sweep."
    )


def auto_sections(auto: Mapping[str, Any]) -> dict:
    """The bins=auto table (scores ± standard error) and the plot of the candidates' scores."""
    rows = list(auto.get("candidates") or [])
    value, se, percent, value_col, percent_col = _keys(rows)
    chosen = [r for r in rows if r.get("chosen")]
    how = str(auto.get("how") or DEFAULT_HOW)
    if chosen:
        how = f"Chose {_label(chosen[0]['bins'])} (frames, y, x) of {len(rows)} candidates. {how}"
        how += _close_call(rows, chosen[0], value, se)
    table = {
        "kind": "table",
        "caption": how,
        "columns": ["bins (frames, y, x)", "chosen", f"{value_col} ± s.e.", percent_col,
                    "dispersion median", "dispersion p95", "empty bins", "NaN pixels"],
        "rows": [
            [
                _label(r["bins"]),
                "*" if r.get("chosen") else "",
                _with_se(r.get(value), r.get(se)),
                r.get(percent),
                r.get("dispersion_median"),
                r.get("dispersion_p95"),
                r.get("empty_bins"),
                r.get("nan_pixels"),
            ]
            for r in rows
        ],
    }  # fmt: skip
    sections = {"bins_auto": table}
    scored = [r for r in rows if _num(r.get(value)) is not None]
    if scored:
        series = []
        for name, part, symbol, colour in (
            ("candidates", [r for r in scored if not r.get("chosen")], "circle", "#4c72b0"),
            ("chosen", [r for r in scored if r.get("chosen")], "star", "#c03c3c"),
        ):
            if not part:
                continue
            series.append(
                {
                    "name": name,
                    "mode": "markers",
                    "symbol": symbol,
                    "color": colour,
                    "size": 12 if name == "chosen" else 8,
                    "x": [_label(r["bins"]) for r in part],
                    "y": [_num(r[value]) for r in part],
                    "error": [2 * (_num(r.get(se)) or 0.0) for r in part],
                }
            )
        sections["bins_auto_scores"] = {
            "kind": "lines",
            "x_type": "category",
            "x_categories": [_label(r["bins"]) for r in rows],
            "series": series,
            "x_label": "candidate bins (frames, y, x)",
            "y_label": f"held-out {value_col} (lower is better)",
            "caption": "Points: each candidate's score; bars: ±2 standard errors.",
        }
    return sections


def heldout_section(quality: Mapping[str, Any]) -> dict | None:
    """Held-out model error per phi bin: points with ±2 standard error bars (no line)."""
    rows = [r for r in quality.get("per_phi_bin") or [] if "phi" in r]
    if "heldout" not in quality or not rows:
        return None
    y, plus, minus = [], [], []
    for r in rows:
        v = _num(r.get("model_error_percent"))
        low, high = (r.get("model_error_percent_2se") or [None, None])[:2]
        y.append(v)
        plus.append(None if v is None or _num(high) is None else _num(high) - v)
        minus.append(None if v is None or _num(low) is None else v - _num(low))
    series = {
        "name": "model error",
        "mode": "markers",
        "x": [r["phi"] for r in rows],
        "y": y,
    }
    if any(p is not None for p in plus):
        series["error_plus"] = [p if p is not None else float("nan") for p in plus]
        series["error_minus"] = [m if m is not None else float("nan") for m in minus]
    total = quality["heldout"]
    overall = _num(total.get("model_error_percent"))
    caption = (
        "Even frames' map predicts the odd frames and back (mdx2's interpolation); "
        "sqrt(mean (r - b)^2 - mean c/t^2) over the mean rate. Points: phi bins; bars: "
        "±2 standard errors."
    )
    if overall is not None:
        caption += f" Whole sweep: {overall:.3g}%."
    return {
        "kind": "lines",
        "series": [series],
        "x_label": "phi (degrees)",
        "y_label": "model error (% of background)",
        "caption": caption,
    }
