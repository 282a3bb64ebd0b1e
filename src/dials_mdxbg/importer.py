"""Worker for dials.mdx_import: frames -> mdx2 image series, streamed."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from dials_mdxbg import kernels
from dials_mdxbg.cli import Progress
from dials_mdxbg.errors import InputError
from dials_mdxbg.frames import FrameSource, default_chunks
from dials_mdxbg.nexus import ImageSeriesWriter

logger = logging.getLogger("dials.mdxbg.import")


def resolve_chunks(
    requested: tuple[int, int, int] | None, source: FrameSource
) -> tuple[int, int, int]:
    """The chunk shape to use: the request, with 0/-1 entries (or None) from mdx2's default."""
    ny, nx = source.frame_shape
    dphi = float(np.diff(source.axes.phi[:2])[0]) if source.n_frames > 1 else 1.0
    default = default_chunks(dphi, source.n_frames, (nx, ny))
    if requested is None:
        return default
    if len(requested) != 3:
        raise InputError(f"chunks needs three numbers (frames, y, x), got {requested}")
    if any(c < -1 for c in requested):
        raise InputError(f"chunks must be positive (or 0/-1 for the default), got {requested}")
    chunks = tuple(c if c > 0 else d for c, d in zip(requested, default))
    limits = (source.n_frames, ny, nx)
    return tuple(min(c, n) for c, n in zip(chunks, limits))


def import_frames(
    source: FrameSource,
    output: Path,
    chunks: tuple[int, int, int],
    level: int = 1,
    nproc: int = 1,
    split: bool = False,
    provenance: dict | None = None,
) -> dict:
    """Stream the masked frames of ``source`` into an mdx2 image series.

    Memory holds a frame or two and the compressed current slab, never the
    sweep: each frame is compressed tile by tile as it arrives (by ``nproc``
    threads while the next frame is read) and the pieces are joined into
    HDF5 chunks when a slab of ``chunks[0]`` frames is complete.

    Args:
        source: validated frames (see :func:`dials_mdxbg.frames.frame_source`).
        output: the NeXus file to write (appears only when complete).
        chunks: HDF5 chunk shape (frames, y, x).
        level: deflate level.
        nproc: threads for compression.
        split: write the movable multi-file layout instead of one file.
        provenance: extra metadata to store under /entry/dials_mdxbg.

    Returns:
        A summary dict (frames, shape, masked pixels by reason, timings).
    """
    n = source.n_frames
    ny, nx = source.frame_shape
    progress = Progress(n, "frames")
    logger.info(
        "Importing %d frames of %d x %d pixels into %s (chunks %s, %s)",
        n,
        ny,
        nx,
        output,
        chunks,
        "compiled kernels" if kernels.have_compiled() else "numpy kernels",
    )
    if split:
        # One part file per slab of frames, joined like the parts of a dask run.
        ranges = [(a, min(a + chunks[0], n)) for a in range(0, n, chunks[0])]

        def write_parts(parts_dir: Path) -> list[dict]:
            return [
                write_part(
                    source, r, parts_dir / _part_name(output, i), chunks, level, nproc, progress
                )
                for i, r in enumerate(ranges)
            ]

        results = _via_parts(output, source, chunks, level, split, provenance, write_parts)
        masked_dynamic = sum(r["masked_dynamic"] for r in results)
        t_read = sum(r["read_seconds"] for r in results)
    else:
        with ImageSeriesWriter(
            output, source.axes, chunks, level=level, nthreads=nproc, provenance=provenance
        ) as writer:
            t_read = _stream_frames(source, writer, 0, n, progress)
        masked_dynamic = writer.masked_dynamic  # complete once the writer has closed
    return _summary(
        source,
        output,
        chunks,
        split,
        masked_dynamic,
        progress.elapsed,
        t_read,
        {"engine": "threads", "threads": nproc},
    )


def _summary(source, output, chunks, split, masked_dynamic, elapsed, t_read, engine) -> dict:
    n = source.n_frames
    ny, nx = source.frame_shape
    size = sum(p.stat().st_size for p in _outputs(output, split))
    static = int(np.count_nonzero(~source.static_valid))
    summary = {
        "output": str(output),
        "frames": n,
        "shape": [n, ny, nx],
        "chunks": list(chunks),
        "layout": "split" if split else "single",
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
    logger.info("Wrote %s: %d frames, %.1f MB, %.1f s", output, n, size / 1e6, elapsed)
    logger.info(
        "Masked pixels: %d static per frame %s; %d more by trusted range/shadow in all",
        static,
        source.masked_static,
        masked_dynamic,
    )
    return summary


def _outputs(output: Path, split: bool) -> list[Path]:
    files = [Path(output)]
    if split:
        parts = Path(output).with_name(Path(output).stem + "_parts")
        files += sorted(parts.iterdir())
    return files


def import_part(
    experiments_json: str,
    selection: dict,
    frame_range: tuple[int, int],
    part_path: str,
    chunks: tuple[int, int, int],
    level: int,
) -> dict:
    """One dask task: frames [a, b) of the selection into their own part file.

    Self-contained (it reopens the experiments), so it can run on any worker;
    idempotent (the part appears atomically), so dask may safely retry it.
    """
    from dxtbx.model.experiment_list import ExperimentListFactory

    from dials_mdxbg.frames import frame_source

    experiments = ExperimentListFactory.from_dict(json.loads(experiments_json))
    source = frame_source(experiments, **selection)
    return write_part(source, frame_range, Path(part_path), chunks, level)


def write_part(
    source: FrameSource,
    frame_range: tuple[int, int],
    part_path: Path,
    chunks: tuple[int, int, int],
    level: int,
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
        part_path, axes, chunks, level=level, nthreads=nthreads, resizable=True
    ) as writer:
        t_read = _stream_frames(source, writer, start, stop, progress, start)
    masked = writer.masked_dynamic
    return {
        "path": str(part_path),
        "frames": [start, stop],
        "masked_dynamic": masked,
        "read_seconds": t_read,
    }


def _part_name(output: Path, index: int) -> str:
    return f"{Path(output).stem}_{index:05d}.nxs"


def _via_parts(output, source, chunks, level, split, provenance, write_parts) -> list[dict]:
    """Write parts into a folder private to this run, then join them into ``output``.

    The folder (``.<name>_parts.part-<pid>-<token>``) keeps concurrent runs
    apart; any failure removes it, so nothing that looks valid is left and a
    re-run starts clean.
    """
    from dials_mdxbg.nexus import assemble_series, check_writable

    output = Path(output)
    check_writable(output)
    # Absolute: workers may run in another directory (or on another machine).
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    parts_dir = output.resolve().parent / f".{output.stem}_parts.part-{token}"
    parts_dir.mkdir()
    try:
        results = write_parts(parts_dir)
        parts = [(Path(r["path"]), *r["frames"]) for r in results]
        for stray in parts_dir.glob(".*.part-*"):  # left by a retried task
            stray.unlink()
        assemble_series(output, source.axes, chunks, level, parts, parts_dir, split, provenance)
    finally:
        if parts_dir.exists():
            shutil.rmtree(parts_dir)
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
    masking and compression happen in C in the writer's threads. Without the
    C encoder (or with a shadow mask) frames are masked to byte planes here.
    """
    t_read = 0.0
    ring: list[np.ndarray] = []  # plane buffers for the fallback path, made on first use
    for k in range(start, stop):
        t0 = time.perf_counter()
        frame = source.read_raw(k)
        t_read += time.perf_counter() - t0
        if writer.can_take_raw(frame):
            writer.add_raw_frame(frame)
        else:
            if not ring:
                # One buffer more than the frames in flight, so a buffer is only
                # refilled once its frame is compressed.
                shape = (4, *source.frame_shape)
                ring = [np.empty(shape, np.uint8) for _ in range(writer.frames_in_flight + 1)]
            planes, n_masked = frame.planes(out=ring[k % len(ring)])
            writer.add_frame(planes, n_masked)
        if progress is not None:
            progress.update(done_before + k + 1 - start)
    return t_read


def import_frames_parallel(
    engine,
    experiments_json: str,
    selection: dict,
    source: FrameSource,
    output: Path,
    chunks: tuple[int, int, int],
    level: int = 1,
    split: bool = False,
    provenance: dict | None = None,
    frames_per_task: int | None = None,
) -> dict:
    """Import as frame-range tasks on a dask engine; the output appears when all are done."""
    from dials_mdxbg.cluster import frame_ranges, run_tasks

    n = source.n_frames
    n_workers = engine.n_workers
    if frames_per_task:
        ranges = frame_ranges(n, math.ceil(n / frames_per_task), chunks[0])
    else:
        ranges = frame_ranges(n, engine.tasks_per_worker * n_workers, chunks[0])
    progress = Progress(n, "frames")
    logger.info(
        "Importing %d frames as %d tasks on %d %s workers into %s",
        n,
        len(ranges),
        n_workers,
        engine.name,
        output,
    )

    def write_parts(parts_dir: Path) -> list[dict]:
        arguments = [
            (experiments_json, selection, r, str(parts_dir / _part_name(output, i)), chunks, level)
            for i, r in enumerate(ranges)
        ]
        return run_tasks(engine, import_part, arguments, "parts")

    results = _via_parts(output, source, chunks, level, split, provenance, write_parts)
    masked_dynamic = sum(r["masked_dynamic"] for r in results)
    return _summary(
        source,
        output,
        chunks,
        split,
        masked_dynamic,
        progress.elapsed,
        None,
        {"engine": engine.name, "tasks": len(ranges), "workers": n_workers},
    )
