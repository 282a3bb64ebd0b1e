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
        "compiled kernels" if kernels.have_numba() else "numpy kernels",
    )
    with ImageSeriesWriter(
        output,
        source.axes,
        chunks,
        level=level,
        nthreads=nproc,
        provenance=provenance,
        split=split,
    ) as writer:
        masked_dynamic, t_read = _stream_frames(source, writer, 0, n, progress)
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
    start, stop = frame_range
    axes = source.axes.frames(start, stop)
    with ImageSeriesWriter(Path(part_path), axes, chunks, level=level, resizable=True) as writer:
        masked, _ = _stream_frames(source, writer, start, stop)
    return {"path": part_path, "frames": [start, stop], "masked_dynamic": masked}


def _stream_frames(
    source: FrameSource, writer: ImageSeriesWriter, start: int, stop: int, progress=None
) -> tuple[int, float]:
    """Read, mask and hand frames [start, stop) to the writer; (masked pixels, read seconds)."""
    masked = 0
    t_read = 0.0
    # A ring of plane buffers, one more than the frames the writer keeps in
    # flight, so a buffer is only refilled once its frame is compressed.
    ny, nx = source.frame_shape
    ring = [np.empty((4, ny, nx), dtype=np.uint8) for _ in range(writer.frames_in_flight + 1)]
    for k in range(start, stop):
        t0 = time.perf_counter()
        planes, n_masked = source.read_planes(k, out=ring[k % len(ring)])
        t_read += time.perf_counter() - t0
        masked += n_masked
        writer.add_frame(planes)
        if progress is not None:
            progress.update(k + 1 - start)
    return masked, t_read


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
    """Import as frame-range tasks (dask or local processes); the output appears when all are done.

    Parts are written into a private folder unique to this run
    (``.<name>_parts.part-<pid>-<token>``), so concurrent runs never mix
    parts. Any failure removes that folder: nothing that looks valid is left,
    and a re-run starts clean.
    """
    from dials_mdxbg.cluster import frame_ranges, run_tasks
    from dials_mdxbg.nexus import assemble_series, check_writable

    output = Path(output)
    check_writable(output)
    # Absolute: workers may run in another directory (or on another machine).
    parts_home = output.resolve().parent
    n = source.n_frames
    n_workers = engine.n_workers
    if frames_per_task:
        ranges = frame_ranges(n, math.ceil(n / frames_per_task), chunks[0])
    else:
        ranges = frame_ranges(n, engine.tasks_per_worker * n_workers, chunks[0])
    parts_dir = parts_home / f".{output.stem}_parts.part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    parts_dir.mkdir()
    progress = Progress(n, "frames")
    logger.info(
        "Importing %d frames as %d tasks on %d %s workers into %s",
        n,
        len(ranges),
        n_workers,
        engine.name,
        output,
    )
    try:
        arguments = [
            (
                experiments_json,
                selection,
                r,
                str(parts_dir / f"{output.stem}_{i:05d}.nxs"),
                chunks,
                level,
            )
            for i, r in enumerate(ranges)
        ]
        results = run_tasks(engine, import_part, arguments, "parts")
        parts = [(Path(r["path"]), *r["frames"]) for r in results]
        for stray in parts_dir.glob(".*.part-*"):  # left by a retried task
            stray.unlink()
        assemble_series(output, source.axes, chunks, level, parts, parts_dir, split, provenance)
    finally:
        if parts_dir.exists():
            shutil.rmtree(parts_dir)
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
