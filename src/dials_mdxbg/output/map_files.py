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
) -> None:
    """The map file, then the PNG preview, radial profile and HTML report asked for."""
    axes = (binned.phi, binned.iy, binned.ix)
    write_binned(paths.binned, axes, binned.signal, binned.extra_datasets(), provenance)
    logger.info("Wrote %s", paths.binned)
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

        t0 = time.perf_counter()
        write_report(
            paths.html, binned, options, provenance["input"], masked_static, paths.binned,
            provenance.get("phil") or None, report_sections(binned, quality, profile),
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
) -> dict:
    """The JSON summary of one map."""
    summary = dict(facts)
    summary.update(
        {
            "output": str(paths.binned),
            "plot": str(paths.plot) if paths.plot else None,
            "profile": str(paths.profile) if paths.profile else None,
            "html": str(paths.html) if paths.html else None,
            "bins": list(binned.bins),
            "valid_range": list(options.valid_range) if options.valid_range else None,
            "estimator": binned.estimator,
            "map_shape": list(binned.signal.shape),
            "empty_bins": binned.empty_bins,
            "per_phi_bin": binned.phi_table(),
            "quality": quality,
            "radial_profile": profile,
            "seconds": seconds,
        }
    )
    return summary
