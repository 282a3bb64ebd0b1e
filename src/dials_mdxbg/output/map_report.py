"""The HTML report of one map: its diagnostics sections and the page, written atomically."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dials_mdxbg.binning.histogram import sampled_frames
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.model import BinnedMap
from dials_mdxbg.output.profile import resolution_ticks
from dials_mdxbg.util.versions import versions


def report_sections(binned: BinnedMap, quality: dict, profile: dict | None) -> dict:
    """The HTML report's diagnostics sections (dispersion, held-out error, bins=auto, profile)."""
    from dials_mdxbg.output.auto_report import auto_sections, heldout_section

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
            "scale": "log",
            "caption": "Variance-to-mean ratio of each bin's valid counts: ~1 for flat Poisson "
            f"background; {figures}. Log colour scale, 1st-99th percentile.",
        }
    heldout = heldout_section(quality)
    if heldout:
        sections["heldout_error"] = heldout
    if quality.get("auto"):
        sections.update(auto_sections(quality["auto"]))
    if profile and profile.get("shells"):
        sections["radial_profiles"] = profile_section(profile)
    return sections


def profile_section(profile: dict) -> dict:
    """The radial profile on the PNG's axis: linear in 1/d^2, labelled in d."""
    shells = profile["shells"]
    x = [(s["inv_d2_min"] + s["inv_d2_max"]) / 2 for s in shells]
    lo, hi = shells[0]["inv_d2_min"], shells[-1]["inv_d2_max"]
    d_mid = [1.0 / math.sqrt(v) if v > 0 else float("inf") for v in x]
    return {
        "kind": "lines",
        "series": [
            {
                "name": f"phi {r['phi']:.1f}",
                "x": x,
                "y": r["mean_counts_per_s"],
                "customdata": d_mid,
                "hovertemplate": "d %{customdata:.3g} Å<br>%{y:.4g} counts/s<extra>%{fullData.name}"
                "</extra>",
            }
            for r in profile["per_phi_bin"]
        ],
        "x_ticks": resolution_ticks(lo, hi),
        "x_range": (lo, hi),
        "x_label": "resolution d (Angstrom); axis linear in 1/d^2, shells of equal width",
        "y_label": "mean background (counts/s per pixel)",
    }


def write_report(
    path: Path,
    binned: BinnedMap,
    options: BinOptions,
    input_info: dict,
    masked_static: dict | None,
    binned_path: Path,
    phil_text: str | None,
    sections: dict | None = None,
    verdict: dict | None = None,
    warnings: list[dict] | None = None,
) -> Path:
    """Render the HTML report of one map and write it atomically.

    Masked pixels are per frame: the static reasons the frame source knows
    (one-step path), and the rest as seen in the histogram's sampled frames
    (trusted range, shadow; for an image series every -1, and the mdx2 mask).
    ``verdict`` and ``warnings`` (the run's, see
    :func:`~dials_mdxbg.output.report.render_report`) go at the top of the page.
    """
    from dials_mdxbg.output.report import render_report
    from dials_mdxbg.output.report_text import empty_text, next_command
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
    filled = binned.filled
    # Filled bins have no valid pixel (count 0) but a value: they are not empty any more.
    n_filled = int(np.count_nonzero(filled)) if filled is not None else 0
    empty = int(np.count_nonzero(~np.isfinite(binned.signal)))
    per_phi = binned.phi_table()
    if n_filled:
        for row, plane in zip(per_phi, filled):
            row["filled_fraction"] = float(np.mean(plane))
    summary = {
        "input": f"{input_info['input']} ({input_info['input_kind']})",
        "frames": binned.n_frames,
        "image_size": (ny, nx),
        "bins": binned.bins,
        "map_shape": binned.signal.shape,
        "valid_range": (
            "{} to {}".format(*options.valid_range) if options.valid_range else "none: every value"
        ),
        "estimator": binned.estimator,
        "empty_bins": empty_text(empty, binned.count.size, n_filled),
        "output": str(binned_path),
        "next_command": next_command(str(binned_path)),
        "versions": versions(),
        "phil": phil_text,
        "masked": masked,
        "detector_pixels": ny * nx,
        "per_phi": per_phi,
    }
    if (binned.quality or {}).get("auto"):
        summary["bins_how"] = "bins=auto (why: the bins=auto section below)"
    histogram = None
    if values is not None:
        histogram = {**values.as_report(options.valid_range, binned.n_frames), "cap": values.cap}
        # The values past the unit bins are drawn (a bar of their own): the note names the frames.
        k, n = len(sampled_frames(binned.n_frames)), binned.n_frames
        histogram["note"] = f"Sampled: every pixel of {k} of {n} frames, evenly spread."
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
        verdict=verdict,
        warnings=warnings,
        filled=filled if n_filled else None,
    )
    return write_text(Path(path), text)
