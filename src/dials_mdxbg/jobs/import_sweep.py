"""The import job: experiments -> mdx2 image series, streamed (``dials.mdx_import``).

:func:`import_sweep` is the public entry point; it runs in this process
(``mp.nproc`` threads) or as frame-range tasks on a dask cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dials_mdxbg.frames.source import (
    FrameSource,
    frame_source,
    frame_source_from_json,
    selections,
)
from dials_mdxbg.jobs.engine import run_tasks, task_engine
from dials_mdxbg.jobs.partition import task_ranges
from dials_mdxbg.model import resolve_chunks
from dials_mdxbg.native import lib as native_lib
from dials_mdxbg.output.paths import SeriesPaths
from dials_mdxbg.output.tables import counts_text
from dials_mdxbg.series.writer import ImageSeriesWriter, SeriesTarget, assemble_series
from dials_mdxbg.util.atomic import atomic_dir, check_writable
from dials_mdxbg.util.progress import Progress
from dials_mdxbg.util.versions import provenance_of

logger = logging.getLogger("dials.mdxbg.import")


def import_frames(source: FrameSource, target: SeriesTarget, nproc: int = 1) -> dict:
    """Stream the masked frames of ``source`` into an mdx2 image series, in this process.

    Memory holds a frame or two and the compressed current slab, never the
    sweep: each frame is compressed tile by tile as it arrives (by ``nproc``
    threads while the next frame is read) and the pieces are joined into
    HDF5 chunks when a slab of ``chunks[0]`` frames is complete.

    Args:
        source: validated frames (see :func:`dials_mdxbg.frames.source.frame_source`).
        target: the file to write and its layout.
        nproc: threads for compression.

    Returns:
        A summary dict (frames, shape, masked pixels by reason, timings).
    """
    n = source.n_frames
    ny, nx = source.frame_shape
    progress = Progress(n, "import: frames")
    logger.info(
        "Importing %d frames of %d x %d pixels into %s (chunks %s, %s)",
        n,
        ny,
        nx,
        target.output,
        ",".join(map(str, target.chunks)),
        f"{native_lib.name()} kernels",
    )
    if target.split:
        # One part file per slab of frames, joined like the parts of a dask run.
        step = target.chunks[0]
        ranges = [(a, min(a + step, n)) for a in range(0, n, step)]

        def write_parts(parts_dir: Path) -> list[dict]:
            return [
                write_part(source, r, target.part_path(parts_dir, i), target, nproc, progress)
                for i, r in enumerate(ranges)
            ]

        results = _via_parts(source, target, write_parts)
        masked_dynamic = sum(r["masked_dynamic"] for r in results)
        t_read = sum(r["read_seconds"] for r in results)
    else:
        with ImageSeriesWriter(
            target.output,
            source.axes,
            target.chunks,
            level=target.level,
            nthreads=nproc,
            provenance=target.provenance,
        ) as writer:
            t_read = _stream_frames(source, writer, 0, n, progress)
        masked_dynamic = writer.masked_dynamic  # complete once the writer has closed
    engine = {"engine": "threads", "threads": nproc}
    return _summary(source, target, masked_dynamic, progress.elapsed, engine, t_read)


def _summary(
    source: FrameSource,
    target: SeriesTarget,
    masked_dynamic: int,
    elapsed: float,
    engine: dict,
    t_read: float | None = None,
) -> dict:
    n = source.n_frames
    ny, nx = source.frame_shape
    size = sum(p.stat().st_size for p in target.files())
    static = int(np.count_nonzero(~source.static_valid))
    summary = {
        "output": str(target.output),
        "frames": n,
        "shape": [n, ny, nx],
        "chunks": list(target.chunks),
        "layout": "split" if target.split else "single",
        "bytes": size,
        "masked_pixels": {
            "static_per_frame": static,
            "static_by_reason": source.masked_static,
            "trusted_range_or_shadow_total": masked_dynamic,
            "total": static * n + masked_dynamic,
        },
        "seconds": {"total": round(elapsed, 3)},
        "engine": engine,
    }
    if t_read is not None:
        summary["seconds"]["reading_and_masking"] = round(t_read, 3)
    logger.info("Wrote %s: %d frames, %.1f MB, %.1f s", target.output, n, size / 1e6, elapsed)
    logger.info(
        "Masked pixels: %d static per frame (%s); %d more by trusted range/shadow in all",
        static,
        counts_text(source.masked_static),
        masked_dynamic,
    )
    return summary


def import_part(
    experiments_json: str,
    selection: dict,
    frame_range: tuple[int, int],
    part_path: str,
    target: SeriesTarget,
) -> dict:
    """One dask task: frames [a, b) of the selection into their own part file.

    Self-contained (it reopens the experiments), so it can run on any worker;
    idempotent (the part appears atomically), so dask may safely retry it.
    """
    source = frame_source_from_json(experiments_json, selection)
    return write_part(source, frame_range, Path(part_path), target)


def write_part(
    source: FrameSource,
    frame_range: tuple[int, int],
    part_path: Path,
    target: SeriesTarget,
    nthreads: int = 1,
    progress: Progress | None = None,
) -> dict:
    """Frames [a, b) into a part file: a loadable image series of those frames.

    Its frame axis is resizable, so the chunks keep the full depth and can be
    copied as they are into the whole series (see ``assemble_series``).
    """
    start, stop = frame_range
    axes = source.axes.frames(start, stop)
    with ImageSeriesWriter(
        part_path, axes, target.chunks, level=target.level, nthreads=nthreads, resizable=True
    ) as writer:
        t_read = _stream_frames(source, writer, start, stop, progress, start)
    masked = writer.masked_dynamic
    return {
        "path": str(part_path),
        "frames": [start, stop],
        "masked_dynamic": masked,
        "read_seconds": t_read,
    }


def _via_parts(source: FrameSource, target: SeriesTarget, write_parts) -> list[dict]:
    """Write parts into a folder private to this run, then join them into the output.

    ``write_parts(parts_dir)`` writes them and returns their summaries. The
    folder (``.<name>_parts.part-<pid>-<token>``, absolute: workers may run
    elsewhere) keeps concurrent runs apart; it becomes ``<name>_parts`` with
    the split layout and is deleted otherwise; any failure removes it, so
    nothing that looks valid is left and a re-run starts clean.
    """
    check_writable(Path(target.output))
    with atomic_dir(target.parts_folder, keep=target.split) as parts_dir:
        results = write_parts(parts_dir)
        parts = [(Path(r["path"]), *r["frames"]) for r in results]
        for stray in parts_dir.glob(".*.part-*"):  # left by a retried task
            stray.unlink()
        assemble_series(target, source.axes, parts, parts_dir)
    return results


def _stream_frames(
    source: FrameSource,
    writer: ImageSeriesWriter,
    start: int,
    stop: int,
    progress: Progress | None = None,
    done_before: int = 0,
) -> float:
    """Read frames [start, stop) and hand them to the writer; returns seconds spent reading.

    This thread only reads (dxtbx holds the GIL while it decodes a frame);
    masking and compression happen in the writer's threads.
    """
    t_read = 0.0
    for k in range(start, stop):
        t0 = time.perf_counter()
        frame = source.read_raw(k)
        t_read += time.perf_counter() - t0
        writer.add_raw_frame(frame)
        if progress is not None:
            progress.update(done_before + k + 1 - start)
    return t_read


def import_frames_parallel(
    engine,
    experiments_json: str,
    selection: dict,
    source: FrameSource,
    target: SeriesTarget,
    frames_per_task: int | None = None,
) -> dict:
    """Import as frame-range tasks on a dask engine; the output appears when all are done."""
    n = source.n_frames
    n_workers = engine.n_workers
    ranges = task_ranges(n, n_workers, engine.tasks_per_worker, target.chunks[0], frames_per_task)
    progress = Progress(n, "import: frames")
    logger.info(
        "Importing %d frames as %d tasks on %d %s workers into %s",
        n,
        len(ranges),
        n_workers,
        engine.name,
        target.output,
    )

    part_target = dataclasses.replace(target, provenance=None)  # parts carry none

    def write_parts(parts_dir: Path) -> list[dict]:
        arguments = [
            (experiments_json, selection, r, str(target.part_path(parts_dir, i)), part_target)
            for i, r in enumerate(ranges)
        ]
        return run_tasks(engine, import_part, arguments, "parts")

    results = _via_parts(source, target, write_parts)
    masked_dynamic = sum(r["masked_dynamic"] for r in results)
    engine_info = {"engine": engine.name, "tasks": len(ranges), "workers": n_workers}
    return _summary(source, target, masked_dynamic, progress.elapsed, engine_info)


@dataclass
class ImportSummary:
    """What :func:`import_sweep` did: one entry per imageset imported.

    Attributes:
        runs: per imageset, the summary dict (output, frames, shape, chunks,
            masked pixels by reason, bytes, seconds, engine).
    """

    runs: list[dict] = field(default_factory=list)

    @property
    def outputs(self) -> list[Path]:
        """The image series written."""
        return [Path(r["output"]) for r in self.runs]

    def to_dict(self) -> dict:
        """One run's dict, or ``{"imagesets": [...]}`` for several (Python API; the
        command's JSON summary is built from ``runs``: :mod:`dials_mdxbg.output.json_summary`)."""
        return dict(self.runs[0]) if len(self.runs) == 1 else {"imagesets": list(self.runs)}


def import_sweep(experiments, params, phil_text: str | None = None) -> ImportSummary:
    """Import the experiments' frames into mdx2 image series, as ``dials.mdx_import`` does.

    Args:
        experiments: a dxtbx ``ExperimentList`` (one imageset, or choose with
            ``params.imageset`` / ``params.all_imagesets``).
        params: the extracted PHIL of :mod:`dials_mdxbg.command_line.mdx_import`
            (``phil_scope.extract()``, changed as needed).
        phil_text: the effective PHIL to store as provenance, if any.

    Returns:
        The summary; the files are complete on disk when it returns.

    Raises:
        InputError: bad input, with a one-line reason (nothing is written).

    Example::

        from dxtbx.model.experiment_list import ExperimentListFactory
        from dials_mdxbg.command_line.mdx_import import phil_scope
        from dials_mdxbg.jobs.import_sweep import import_sweep

        params = phil_scope.extract()
        params.output.data = "bkg_data.nxs"
        summary = import_sweep(ExperimentListFactory.from_json_file("background.expt"), params)
    """
    runs = selections(experiments, params)
    experiments_json = json.dumps(experiments.to_dict(), default=str)
    summary = ImportSummary()
    with contextlib.ExitStack() as stack:
        engine = stack.enter_context(task_engine(params.mp))
        for selection, index in runs:
            source = frame_source(experiments, **selection)
            output = SeriesPaths.for_imageset(params.output, index).data
            if index is not None:
                logger.info("Imageset %d: %s -> %s", index, source.description, output)
            provenance = provenance_of(
                "dials.mdx_import",
                phil_text,
                experiments=experiments_json,
                imageset=json.dumps(selection["imageset"]),
            )
            target = SeriesTarget(
                output=Path(output),
                chunks=resolve_chunks(params.chunks, source.axes),
                level=params.compression.level,
                split=params.output.layout == "split",
                provenance=provenance,
            )
            if engine is not None:
                run = import_frames_parallel(
                    engine,
                    experiments_json,
                    selection,
                    source,
                    target,
                    frames_per_task=params.mp.dask.frames_per_task,
                )
            else:
                run = import_frames(source, target, nproc=params.mp.nproc)
            run["imageset"] = selection["imageset"] if index is None else index
            summary.runs.append(run)
    return summary
