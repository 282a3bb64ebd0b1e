"""The binning job: image series or frames -> background map (``dials.mdx_bin_background``).

:func:`bin_background` computes a :class:`~dials_mdxbg.model.BinnedMap` from
one :class:`~dials_mdxbg.jobs.inputs.BinSource`, in this process (``nproc``
threads) or as frame-range tasks on a dask cluster; integer sums make both
give the same map to the last bit, whatever the partition.
:func:`make_background` is the whole command, a short pipeline per map: open
the inputs, bin, quality, profile, log, write.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from dataclasses import dataclass, field

from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.binning.quality import map_quality
from dials_mdxbg.errors import InputError
from dials_mdxbg.jobs.box_map import box_map, heldout
from dials_mdxbg.jobs.engine import task_engine
from dials_mdxbg.jobs.inputs import BinningInputs, BinSource, MapInput, binning_inputs, open_inputs
from dials_mdxbg.jobs.model_choice import bin_model
from dials_mdxbg.model import BinnedMap
from dials_mdxbg.output.paths import MapPaths
from dials_mdxbg.util.atomic import check_writable
from dials_mdxbg.util.versions import provenance_of

__all__ = ["BinSource", "bin_background", "make_background"]

logger = logging.getLogger("dials.mdxbg.background")


def bin_background(
    src: BinSource,
    options: BinOptions,
    nproc: int = 1,
    engine=None,
    frames_per_task: int | None = None,
) -> BinnedMap:
    """Bin ``src`` into a background map, here (``nproc`` threads) or on a dask engine.

    Args:
        src: the image series or frames.
        options: bins, valid_range, estimator.
        nproc: threads in this process (ignored with an engine).
        engine: a :class:`dials_mdxbg.jobs.engine.DaskEngine`, or None.
        frames_per_task: dask task size (default: a few tasks per worker).

    Returns:
        The map, identical to ``mdx2.bin_image_series`` for ``estimator="mean"``.

    Example::

        from dials_mdxbg.binning.phil import BinOptions
        from dials_mdxbg.jobs.bin_background import BinSource, bin_background

        binned = bin_background(
            BinSource.from_series("bkg_data.nxs"), BinOptions((10, 20, 20), (0, 200))
        )
        print(binned.signal.shape, binned.empty_bins)
    """
    with src.open() as opened:
        if options.valid_auto:
            from dials_mdxbg.binning.valid_auto import resolve_valid_range

            options = resolve_valid_range(opened, options, nproc)
        if options.auto:
            if engine is not None:
                logger.info("bins=auto runs in this process (%d threads), not on dask", nproc)
            from dials_mdxbg.binning.search import bin_auto  # only bins=auto needs it

            rebin = functools.partial(_bin_chosen, opened, options, nproc=nproc)
            return bin_auto(opened, options, nproc, rebin)
        binned, parity = box_map(opened, options, nproc, src, engine, frames_per_task)
        if options.diagnostics:
            binned.quality = heldout(opened, options, binned, parity, nproc)
        return binned


def _bin_chosen(opened, options: BinOptions, bins, nproc: int) -> BinnedMap:
    from dataclasses import replace

    again = replace(options, bins=tuple(bins), diagnostics=True)
    binned, parity = box_map(opened, again, nproc)
    binned.quality = heldout(opened, again, binned, parity, nproc)
    return binned


@dataclass
class BackgroundSummary:
    """What :func:`make_background` did: one entry per map written."""

    runs: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """One run's dict, or ``{"imagesets": [...]}`` for several (Python API; the
        command's JSON summary is built from ``runs``: :mod:`dials_mdxbg.output.json_summary`)."""
        return dict(self.runs[0]) if len(self.runs) == 1 else {"imagesets": list(self.runs)}


def make_background(
    series: str | None, experiments, params, phil_text: str | None = None
) -> BackgroundSummary:
    """The whole ``dials.mdx_bin_background`` job: maps, PNGs, log, summary.

    Args:
        series: an image series file, or None for the one-step path.
        experiments: an ``ExperimentList`` for the one-step path (else None/empty).
        params: the extracted PHIL of :mod:`dials_mdxbg.command_line.mdx_bin_background`.
        phil_text: the effective PHIL to store as provenance, if any.

    Raises:
        InputError: bad input, with a one-line reason (nothing is written).
    """
    inputs = binning_inputs(params, experiments, [str(series)] if series else [])
    if inputs is None:
        raise InputError("no image series or experiments given")
    return make_background_of(inputs, params, phil_text)


def make_background_of(
    inputs: BinningInputs, params, phil_text: str | None = None
) -> BackgroundSummary:
    """:func:`make_background` of inputs already taken from the command line."""
    if params.mask:
        logger.warning(
            "mask= is deprecated: it is an mdx2 mask, now called input.mdx2_mask= "
            "(a DIALS mask for the one-step path is frames.mask=)",
            extra={"code": "deprecated_mask"},
        )
    options = BinOptions.from_params(params)
    maps = open_inputs(inputs, params)  # every input validated before any work
    summary = BackgroundSummary()
    with task_engine(params.mp) as engine:
        for one in maps:
            paths = MapPaths.for_imageset(params.output, one.index)
            summary.runs.append(_one_map(one, paths, params, options, engine, phil_text))
    return summary


def _one_map(one: MapInput, paths: MapPaths, params, options, engine, phil_text) -> dict:
    """Bin one input, then its quality, profile, log and files; returns its summary."""
    from dials_mdxbg.binning.valid_auto import warn_if_rejecting
    from dials_mdxbg.output.map_files import map_summary, write_map_files
    from dials_mdxbg.output.tables import log_quality, log_table, log_usage
    from dials_mdxbg.output.verdict import map_verdict
    from dials_mdxbg.output.warmup import start as start_outputs

    _check_outputs(paths, one)
    options = _data_options(one, options, params.mp.nproc)  # valid_range=auto resolved first
    if paths.html is not None or options.valid_range:  # the verdict reads valid_range's toll
        options = dataclasses.replace(options, histogram=True)
    kind = "image_series" if one.source.series else "experiments"
    bins = ",".join(map(str, options.bins)) if options.bins else "auto"
    logger.info("Binning %s (%s) with bins=%s", one.description, kind, bins)
    t0 = time.perf_counter()
    box = functools.partial(bin_background, nproc=params.mp.nproc, engine=engine,
                            frames_per_task=params.mp.dask.frames_per_task)  # fmt: skip
    output_parts = start_outputs(paths, params.mp.nproc)  # meanwhile, on a second core
    binned = bin_model(one, options, params, box, engine)  # model = box (mdx2's) | shells | auto
    seconds = round(time.perf_counter() - t0, 3)
    used = int(binned.count.sum())
    pixels = binned.n_frames * int(binned.ny_nx[0]) * int(binned.ny_nx[1])
    log_usage(binned, used, pixels)
    facts = {
        "input": one.description,
        "input_kind": kind,
        "frames": binned.n_frames,
        "pixel_values_used": used,
        "pixel_values_total": pixels,
    }
    if one.index is not None:
        facts["imageset"] = one.index
    warn_if_rejecting(binned.values, options.valid_range, binned.n_frames)
    quality = map_quality(binned, options)
    log_quality(binned, quality)
    verdict = map_verdict(binned, quality, options.valid_range, params.verdict.phi_range)
    profile = _profile(binned, one.geometry, params.profile.n_shells)
    provenance = provenance_of("dials.mdx_bin_background", phil_text, input=facts)
    masked = one.masked_static
    output_parts()
    write_map_files(paths, binned, quality, profile, provenance, options, masked, verdict)
    log_table(binned)
    given = one.source.series or _experiments_path(params) or one.description
    return map_summary(paths, binned, options, facts, quality, profile, seconds, verdict, given)


def _experiments_path(params) -> str | None:
    """The experiment list as given on the command line (one-step path), if one was."""
    files = [w.filename for w in (params.input.experiments or [])]
    return files[0] if len(files) == 1 else None


def _data_options(one: MapInput, options: BinOptions, nproc: int) -> BinOptions:
    """valid_range=auto and the detector kind, for the gain."""
    if options.valid_auto:
        from dials_mdxbg.binning.valid_auto import resolve_valid_range

        with one.source.open() as opened:
            options = resolve_valid_range(opened, options, nproc)
    if one.geometry is not None:
        from dials_mdxbg.binning.gain import is_photon_counter

        sensor = one.geometry[0][0].get_type()
        options = dataclasses.replace(options, photon_counter=is_photon_counter(sensor))
    return options


def _check_outputs(paths: MapPaths, one: MapInput) -> None:
    """Outputs that cannot be made, refused before any work (library use has no plan check)."""
    for _, path in paths.named():
        check_writable(path)
    if paths.profile and one.geometry is None:
        raise InputError(
            f"output.profile={paths.profile} needs the geometry: {one.description} carries none "
            "(an mdx2 file?); give geometry=background.expt"
        )
    if paths.html is not None:
        from dials_mdxbg.output.report import missing_dependencies

        missing = missing_dependencies()
        if missing:
            raise InputError(
                f"output.html needs {' and '.join(missing)} (they come with DIALS): install "
                "them, or set output.html=None"
            )


def _profile(binned: BinnedMap, geometry, n_shells: int) -> dict | None:
    """The radial profile of the map, when the geometry is known."""
    if geometry is None:
        return None
    from dials_mdxbg.output.profile import bin_two_theta, radial_profile

    detector, beam = geometry
    two_theta = bin_two_theta(detector, beam, binned.iy, binned.ix)
    return radial_profile(
        binned.signal, binned.count, binned.phi, two_theta, beam.get_wavelength(), n_shells
    )
