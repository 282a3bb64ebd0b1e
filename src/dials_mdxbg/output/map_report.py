"""The HTML report of one map: its diagnostics sections and the page, written atomically."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.model import BinnedMap
from dials_mdxbg.util.versions import versions


def report_sections(binned: BinnedMap, quality: dict, profile: dict | None) -> dict:
    """The HTML report's diagnostics sections (dispersion, held-out error, bins=auto, profile)."""
    sections: dict = {}
    if binned.dispersion is not None and np.isfinite(binned.dispersion).any():
        disp = quality.get("dispersion", {})
        med, p95 = (disp.get(k) for k in ("median", "p95"))
        figures = f"median {med:.3f}, 95th percentile {p95:.3f}" if med is not None else ""
        sections["dispersion"] = {
            "kind": "map",
            "values": binned.dispersion,
            "label": "variance / mean",
            "units": "",
            "caption": "Variance-to-mean ratio of each bin's valid counts: ~1 for flat Poisson "
            f"background; {figures}.",
        }
    rows = quality.get("per_phi_bin") or []
    if "heldout" in quality and rows:
        sections["heldout_error"] = {
            "kind": "lines",
            "series": [
                {
                    "name": "model error",
                    "x": [r["phi"] for r in rows],
                    "y": [r.get("model_error_percent") for r in rows],
                }
            ],
            "x_label": "phi (degrees)",
            "y_label": "model error (% of background)",
            "caption": "Even frames' map predicts the odd frames and back (mdx2's "
            "interpolation); sqrt(mean (r - b)^2 - mean c/t^2) over the mean rate.",
        }
    auto = quality.get("auto")
    if auto:
        columns = ["bins", "chosen", "model error %", "dispersion median", "dispersion p95",
                   "empty bins", "NaN pixels"]  # fmt: skip
        sections["bins_auto"] = {
            "kind": "table",
            "columns": columns,
            "rows": [
                [
                    ",".join(map(str, r["bins"])),
                    "*" if r["chosen"] else "",
                    r["model_error_percent"],
                    r["dispersion_median"],
                    r["dispersion_p95"],
                    r["empty_bins"],
                    r["nan_pixels"],
                ]
                for r in auto["candidates"]
            ],
        }
    if profile and profile.get("shells"):
        d_mid = [
            1.0 / math.sqrt((s["inv_d2_min"] + s["inv_d2_max"]) / 2) for s in profile["shells"]
        ]
        sections["radial_profiles"] = {
            "kind": "lines",
            "series": [
                {"name": f"phi {r['phi']:.1f}", "x": d_mid, "y": r["mean_counts_per_s"]}
                for r in profile["per_phi_bin"]
            ],
            "x_label": "resolution d (Angstrom), shells equal in 1/d^2",
            "y_label": "mean background (counts/s per pixel)",
        }
    return sections


def write_report(
    path: Path,
    binned: BinnedMap,
    options: BinOptions,
    input_info: dict,
    masked_static: dict | None,
    binned_path: Path,
    phil_text: str | None,
    sections: dict | None = None,
) -> Path:
    """Render the HTML report of one map and write it atomically.

    Masked pixels are per frame: the static reasons the frame source knows
    (one-step path), and the rest as seen in the histogram's sampled frames
    (trusted range, shadow; for an image series every -1, and the mdx2 mask).
    """
    from dials_mdxbg.output.report import render_report
    from dials_mdxbg.util.atomic import write_text

    ny, nx = (int(v) for v in binned.ny_nx)
    values = binned.values
    masked = dict(masked_static or {})
    if values is not None and values.pixels:
        per_frame = values.masked * (ny * nx) / values.pixels
        if masked_static is None:
            masked["masked in the image series (-1) or by the mdx2 mask"] = round(per_frame)
        else:
            dynamic = per_frame - sum(masked_static.values())
            masked["trusted range or shadow (sampled frames)"] = max(round(dynamic), 0)
    summary = {
        "input": f"{input_info['input']} ({input_info['input_kind']})",
        "frames": binned.n_frames,
        "image_size": (ny, nx),
        "bins": binned.bins,
        "map_shape": binned.signal.shape,
        "valid_range": options.valid_range or "none",
        "estimator": binned.estimator,
        "empty_bins": f"{binned.empty_bins:,} of {binned.count.size:,}",
        "output": str(binned_path),
        "versions": versions(),
        "phil": phil_text,
        "masked": masked,
        "detector_pixels": ny * nx,
        "per_phi": binned.phi_table(),
    }
    histogram = values.as_report(options.valid_range, binned.n_frames) if values else None
    text = render_report(
        binned.phi,
        binned.iy,
        binned.ix,
        binned.signal,
        binned.errors,
        binned.count,
        summary,
        histogram,
        sections,
        title=f"Background map {Path(binned_path).name}",
    )
    return write_text(Path(path), text)
