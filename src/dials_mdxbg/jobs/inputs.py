"""The inputs of a job, opened and validated before any work, and the output plan.

Both commands check here, with one-line errors, everything that can be checked
before the first frame is read: which inputs were given, the frame selection,
the geometry, and (through :class:`~dials_mdxbg.util.plan.OutputPlan`) every
output against every input. :class:`BinSource` is what a binning task reads:
picklable, so a dask worker can open it again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dials_mdxbg.binning.histogram import sampled_frames
from dials_mdxbg.errors import InputError, OutputError
from dials_mdxbg.frames.files import image_files
from dials_mdxbg.frames.masking import dials_mask_problem
from dials_mdxbg.frames.source import (
    FrameSource,
    frame_source,
    frame_source_from_json,
    frame_tasks,
    selections,
)
from dials_mdxbg.model import SeriesAxes
from dials_mdxbg.output.paths import MapPaths, SeriesPaths, summary_path
from dials_mdxbg.output.tables import counts_text
from dials_mdxbg.series.mdx2_mask import mdx2_mask_excluder, read_mdx2_mask
from dials_mdxbg.series.reader import ImageSeriesReader, is_image_series_file, series_tasks
from dials_mdxbg.util.plan import OutputPlan, input_args
from dials_mdxbg.util.tempnames import NAME_MAX

logger = logging.getLogger("dials.mdxbg.inputs")


@dataclass
class OpenedSource:
    """An opened :class:`BinSource`: the axes and how to walk its blocks.

    Attributes:
        axes: the series axes.
        tasks_for: ``(frame_range=None, progress=None) -> make_tasks``, where
            ``make_tasks()`` returns a fresh iterator of block tasks.
        excluded: ``(frame0, row0, shape) -> bool array`` of pixels excluded by
            an mdx2 mask, or None.
        block_frames: frames per block (tasks are cut on multiples of it).
    """

    axes: SeriesAxes
    tasks_for: Callable
    excluded: Callable | None
    block_frames: int


@dataclass
class BinSource:
    """Where a binning job reads its counts: picklable, so a dask worker can open it.

    Either ``series`` (an image series file, with an optional mdx2 ``mask``) or
    ``experiments`` (experiment list JSON) with ``selection`` (keyword
    arguments of :func:`dials_mdxbg.frames.source.frame_source`).
    """

    series: str | None = None
    mask: str | None = None
    experiments: str | None = None
    selection: dict | None = None
    # The validated frames, when this process already built them: opening then
    # skips rebuilding the experiments from JSON and their masks (0.5-1 s on a
    # 16M sweep). Never pickled: a dask worker rebuilds them.
    frames: FrameSource | None = field(default=None, compare=False, repr=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["frames"] = None
        return state

    @classmethod
    def from_series(cls, path: str | Path, mask: str | Path | None = None) -> BinSource:
        """An image series file (absolute paths, so that dask workers find it)."""
        return cls(
            series=str(Path(path).resolve()), mask=str(Path(mask).resolve()) if mask else None
        )

    @classmethod
    def from_experiments(
        cls, experiments, selection: dict | None = None, frames: FrameSource | None = None
    ) -> BinSource:
        """Frames of an ``ExperimentList`` (``selection``: frame_source keyword arguments).

        ``frames``: the :func:`frame_source` of that selection, if already built here.
        """
        return cls(
            experiments=json.dumps(experiments.to_dict(), default=str),
            selection=dict(selection or {}),
            frames=frames,
        )

    @contextlib.contextmanager
    def open(self) -> Iterator[OpenedSource]:
        """Open the file or the experiments for reading."""
        if self.series:
            with ImageSeriesReader(self.series) as reader:
                excluded = None
                if self.mask:
                    excluded = mdx2_mask_excluder(read_mdx2_mask(self.mask, reader.shape))

                # Blocks binned while they inflate; the histogram's frames come first in theirs.
                first = sampled_frames(reader.shape[0])

                def tasks_for(frame_range=None, progress=None):
                    return series_tasks(reader, progress, frame_range, first)

                yield OpenedSource(reader.axes, tasks_for, excluded, reader.block_frames)
        else:
            source = self.frames or frame_source_from_json(self.experiments, self.selection)

            def tasks_for(frame_range=None, progress=None):
                return frame_tasks(source, progress, frame_range)

            yield OpenedSource(source.axes, tasks_for, None, 1)


@dataclass(frozen=True)
class BinningInputs:
    """What ``dials.mdx_bin_background`` was given: an image series or experiments."""

    series: str | None
    experiments: object | None


@dataclass(frozen=True)
class MapInput:
    """One map to make: its frames, output index, description and geometry.

    Attributes:
        source: where the counts are read.
        index: the imageset's index in output names (None for a single map).
        description: the input, for the log, the report and the summary.
        masked_static: pixels masked in every frame, by reason (one-step path).
        geometry: (detector, beam), or None when the input carries none.
    """

    source: BinSource
    index: int | None
    description: str
    masked_static: dict | None
    geometry: tuple | None


def experiments_of(wrappers) -> object:
    """The experiments of every experiment list given, as one list (DIALS' flatten).

    The same experiment in two lists (a list given twice, or a copy of it) is
    refused naming both files: DIALS' own error names only the identifier.
    """
    from dials.util.options import flatten_experiments

    try:
        return flatten_experiments(wrappers)
    except RuntimeError as e:
        if "already in ExperimentList" not in str(e):
            raise
    owner: dict[str, tuple[int, str]] = {}
    for i, wrapper in enumerate(wrappers):
        name = wrapper.filename
        for identifier in wrapper.data.identifiers():
            first, first_name = owner.setdefault(identifier, (i, name))
            if first == i:
                continue
            if first_name == name:
                raise InputError(f"{name} is given twice; give each experiment list once")
            raise InputError(
                f"{first_name} and {name} hold the same experiment (identifier "
                f"{identifier}): one list given twice, or a copy of it; give each experiment once"
            )
    raise InputError("an experiment list is given twice; give each experiment list once")


def take_series_files(args: list[str]) -> tuple[list[str], list[str]]:
    """Take image-series files out of the arguments before DIALS sees them.

    DIALS' parser would try to read a .nxs file as detector images.
    """
    series, rest = [], []
    for arg in args:
        (series if "=" not in arg and is_image_series_file(arg) else rest).append(arg)
    return series, rest


def binning_inputs(params, experiments, series_args: list[str]) -> BinningInputs | None:
    """The image series or the experiments to bin (None if neither was given)."""
    if len(series_args) > 1:
        raise InputError(f"give one image series, not {len(series_args)}")
    if series_args and params.input.image_series:
        raise InputError(
            f"give the image series once: {series_args[0]} and "
            f"input.image_series={params.input.image_series}"
        )
    series = series_args[0] if series_args else params.input.image_series
    if not series and not experiments:
        return None
    if series and experiments:
        raise InputError("give an image series or experiments, not both")
    if params.mask:  # the deprecated name of input.mdx2_mask
        params.input.mdx2_mask = params.input.mdx2_mask or params.mask
    if experiments and params.input.mdx2_mask:
        raise InputError(
            "input.mdx2_mask= (mask=) is an mdx2 mask for image series input; for experiments "
            "use frames.mask= (a dials.generate_mask mask)"
        )
    if experiments:
        _check_dials_mask(experiments, params.frames, params.frames.mask, "frames.mask")
    return BinningInputs(series, experiments)


def _check_dials_mask(experiments, selecting, path: str | None, param: str) -> None:
    """Refuse, before any work, a DIALS mask made for another detector than the frames'."""
    if not path:
        return
    imagesets = experiments.imagesets()
    for selection, _ in selections(experiments, selecting):
        detector = imagesets[selection.get("imageset") or 0].get_detector()
        problem = dials_mask_problem(path, detector, param)
        if problem:
            raise InputError(problem)


def open_inputs(inputs: BinningInputs, params) -> list[MapInput]:
    """Validate the inputs (one-line errors, before any work): one :class:`MapInput` per map."""
    from dials_mdxbg.output.profile import check_geometry, geometry_from_file

    fixed = geometry_from_file(params.geometry) if params.geometry else None
    if inputs.series:
        series = inputs.series
        _refuse_frame_selection(params.frames, series)
        with ImageSeriesReader(Path(series)) as reader:
            shape = reader.shape
        if fixed is None:
            from dials_mdxbg.output.profile import geometry_from_series

            geometry = geometry_from_series(Path(series))
        else:
            geometry = fixed
        if geometry is not None:
            name = str(params.geometry) if fixed else f"{series} (its provenance)"
            check_geometry(geometry[0], shape[1:], name)
        source = BinSource.from_series(series, params.input.mdx2_mask)
        return [MapInput(source, None, str(series), None, geometry)]
    maps = []
    experiments = inputs.experiments
    for selection, index in selections(experiments, params.frames):
        frames = frame_source(experiments, **selection)  # validated: one-line errors
        logger.info(
            "%s: %d frames; statically masked pixels per frame: %s",
            frames.description,
            frames.n_frames,
            counts_text(frames.masked_static),
        )
        if fixed is not None:
            geometry = fixed
            check_geometry(geometry[0], frames.frame_shape, str(params.geometry))
        else:
            iset = experiments.imagesets()[selection.get("imageset") or 0]
            geometry = (iset.get_detector(), iset.get_beam())
        source = BinSource.from_experiments(experiments, selection, frames)
        maps.append(MapInput(source, index, frames.description, frames.masked_static, geometry))
    return maps


def _refuse_frame_selection(frames, series) -> None:
    """``frames.*`` select and mask experiments' frames; with a series they cannot apply.

    Refused rather than ignored (mdx2 would ignore them): a map binned from
    other frames or pixels than asked would be silently wrong.
    """
    given = {
        "image_range": frames.image_range is not None,
        "mask": bool(frames.mask),
        "imageset": frames.imageset is not None,
        "all_imagesets": bool(frames.all_imagesets),
        "goniometer_shadow": bool(frames.goniometer_shadow),
    }
    for name, set_ in given.items():
        if set_:
            raise InputError(
                f"frames.{name}= applies to experiments (the one-step path), not to the image "
                f"series {series}; drop it, or bin the experiments instead"
            )


def _check_geometry(geometry, ny_nx, name: str) -> None:
    if geometry is not None:
        from dials_mdxbg.output.profile import check_geometry

        check_geometry(geometry[0], ny_nx, name)


def binning_plan(inputs: BinningInputs, params, args: list[str]) -> OutputPlan:
    """What the binning reads and writes, for :meth:`OutputPlan.check`."""
    plan = OutputPlan()
    for arg in input_args(args):
        plan.add_input(arg, "input")
    indices = [None]
    if inputs.series:
        with ImageSeriesReader(inputs.series) as reader:  # validated now, one-line errors
            for path in reader.files:
                plan.add_input(path, "image series file")
    else:
        for iset in inputs.experiments.imagesets():
            for path in image_files(iset):
                plan.add_input(path, "image")
        indices = [index for _, index in selections(inputs.experiments, params.frames)]
    plan.add_input(params.input.mdx2_mask, "mask")
    plan.add_input(params.frames.mask, "mask")
    plan.add_input(params.geometry, "geometry file")
    for index in indices:
        for param, path in MapPaths.for_imageset(params.output, index).named():
            plan.add_output(param, path)
    plan.add_output("output.json", summary_path(params.output))
    plan.add_output("output.log", params.output.log)
    return plan


def import_inputs(params, experiments, taken: list[str]):
    """The experiments to import (None if none were given)."""
    if experiments:
        _check_dials_mask(experiments, params, params.mask, "mask")
    return experiments or None


def import_plan(experiments, params, args: list[str]) -> OutputPlan:
    """What the import reads and writes, for :meth:`OutputPlan.check`."""
    plan = OutputPlan()
    for arg in input_args(args):
        plan.add_input(arg, "input")
    for iset in experiments.imagesets():
        for path in image_files(iset):
            plan.add_input(path, "image")
    plan.add_input(params.mask, "mask")
    for _, index in selections(experiments, params):
        paths = SeriesPaths.for_imageset(params.output, index)
        plan.add_output("output.data", paths.data)
        # The parts folder of the split layout; otherwise only scratch (a dask run's).
        kind = "dir" if paths.split else "scratch"
        plan.add_output("output.data's parts folder", paths.parts, kind)
        if paths.split:
            _check_part_names(paths.data)
    plan.add_output("output.json", summary_path(params.output))
    plan.add_output("output.log", params.output.log)
    return plan


def _check_part_names(data: Path) -> None:
    """The split layout's part files are named ``<data stem>_00000.nxs`` (series.writer)."""
    part = f"{data.stem}_00000.nxs"
    if len(os.fsencode(part)) > NAME_MAX:
        raise OutputError(
            f"output.data={str(data)[:60]}...: its part files ({part[:30]}...) would have names "
            f"longer than a file may have ({NAME_MAX} bytes); give a shorter name"
        )
