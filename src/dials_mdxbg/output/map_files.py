"""Everything a binning run writes for one map, and the summary that names it."""

from __future__ import annotations

import logging
import time

from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.model import BinnedMap
from dials_mdxbg.output.binned import write_binned
from dials_mdxbg.output.paths import MapPaths

logger = logging.getLogger("dials.mdxbg.background")


def write_map_files(
    paths: MapPaths,
    binned: BinnedMap,
    quality: dict,
    profile: dict | None,
    provenance: dict,
    options: BinOptions,
    masked_static: dict | None,
    verdict: dict | None = None,
) -> None:
    """The map file, then the PNG preview, radial profile and HTML report asked for.

    The report is given the verdict and the warnings logged so far in this run.
    """
    axes = (binned.phi, binned.iy, binned.ix)
    write_binned(paths.binned, axes, binned.signal, binned.extra_datasets(), provenance)
    logger.info("Wrote %s", paths.binned)
    if paths.plot or paths.profile or paths.html:
        from dials_mdxbg.util.memory import room_for_blas

        room_for_blas()  # matplotlib's transforms call OpenBLAS: a hang without room
    if paths.plot:
        from dials_mdxbg.output.plot import plot_map

        title = f"{paths.binned}: bins {binned.bins}, valid_range {options.valid_range}"
        plot_map(paths.plot, *axes, binned.signal, title=title, filled=binned.filled)
        logger.info("Preview written to %s", paths.plot)
    if paths.profile:
        from dials_mdxbg.output.profile import plot_profile

        plot_profile(paths.profile, profile, f"{paths.binned}: bins {binned.bins}")
        logger.info("Radial profile written to %s", paths.profile)
    if paths.html:
        from dials_mdxbg.output.map_report import report_sections, write_report
        from dials_mdxbg.util.warnings_log import warnings_so_far

        t0 = time.perf_counter()
        write_report(
            paths.html, binned, options, provenance["input"], masked_static, paths.binned,
            provenance.get("phil") or None, report_sections(binned, quality, profile),
            verdict=verdict, warnings=warnings_so_far(),
        )  # fmt: skip
        logger.info("Report written to %s (%.1f s)", paths.html, time.perf_counter() - t0)


def map_summary(
    paths: MapPaths,
    binned: BinnedMap,
    options: BinOptions,
    facts: dict,
    quality: dict,
    profile: dict | None,
    seconds: float,
    verdict: dict,
    given: str,
) -> dict:
    """The JSON summary of one map (v1: the same keys whatever the options, ``docs/json.md``)."""
    from dials_mdxbg.output.json_summary import bins_choice, model_choice, quality_v1
    from dials_mdxbg.output.verdict import nan_pixels

    return {
        "input": str(given),
        "input_kind": facts["input_kind"],
        "description": facts["input"],
        "imageset": facts.get("imageset"),
        "frames": facts["frames"],
        "pixel_values_used": facts["pixel_values_used"],
        "pixel_values_total": facts["pixel_values_total"],
        "output": str(paths.binned),
        "plot": str(paths.plot) if paths.plot else None,
        "profile": str(paths.profile) if paths.profile else None,
        "html": str(paths.html) if paths.html else None,
        "bins": bins_choice(binned.bins, quality),
        "model": model_choice(quality),
        "valid_range": list(options.valid_range) if options.valid_range else None,
        "estimator": binned.estimator,
        "map_shape": list(binned.signal.shape),
        "empty_bins": binned.empty_bins,
        "per_phi_bin": binned.phi_table(),
        "quality": quality_v1(quality, nan_pixels(binned, quality)),
        "radial_profile": profile,
        "seconds": float(seconds),
        "verdict": verdict,
    }
