"""Write mdx2 image series: frame by frame into one file, or parts joined into one."""

from __future__ import annotations

import contextlib
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from dials_mdxbg.model import SeriesAxes, storage_chunks
from dials_mdxbg.series.layout import (
    IMAGE_SERIES,
    create_series_group,
    describe_fields,
    new_file,
    nxdata,
)
from dials_mdxbg.series.slab import SlabEncoder
from dials_mdxbg.util.atomic import atomic_path, check_writable, current_path, ensure_space


@dataclass(frozen=True)
class SeriesTarget:
    """Where and how an image series is written.

    Attributes:
        output: the NeXus file (appears only when complete).
        chunks: HDF5 chunk shape (frames, y, x).
        level: deflate level.
        split: the movable multi-file layout instead of one file.
        provenance: metadata stored under /entry/dials_mdxbg.
    """

    output: Path
    chunks: tuple[int, int, int]
    level: int = 1
    split: bool = False
    provenance: dict | None = None

    def part_path(self, parts_dir: Path, index: int) -> Path:
        """The ``index``-th part file of the series in ``parts_dir``."""
        return Path(parts_dir) / f"{Path(self.output).stem}_{index:05d}.nxs"

    def files(self) -> list[Path]:
        """Every file the finished series consists of."""
        files = [current_path(self.output)]  # staged until the run commits
        if self.split:
            files += sorted(current_path(self.parts_folder).iterdir())
        return files

    @property
    def parts_folder(self) -> Path:
        """The split layout's folder of part files, ``<output stem>_parts``."""
        return Path(self.output).with_name(Path(self.output).stem + "_parts")


class ImageSeriesWriter:
    """Write an mdx2 image series frame by frame, atomically.

    Use as a context manager and call :meth:`add_raw_frame` with each frame
    as read (a :class:`~dials_mdxbg.frames.raw_frame.RawFrame`), in order.
    The multi-file layout is made of such series, one per part, joined by
    :func:`assemble_series`.
    """

    def __init__(
        self,
        path: Path,
        axes: SeriesAxes,
        chunks: tuple[int, int, int],
        level: int = 1,
        nthreads: int = 1,
        provenance: dict | None = None,
        resizable: bool = False,
    ):
        self.path = Path(path)
        self.axes = axes
        self.resizable = resizable
        self.chunks = storage_chunks(chunks, axes.shape, resizable)
        self.level = level
        self.nthreads = nthreads
        self.provenance = provenance
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ImageSeriesWriter:
        check_writable(self.path)
        stack = self._stack
        self._tmp = stack.enter_context(atomic_path(self.path))
        pool = stack.enter_context(ThreadPoolExecutor(self.nthreads)) if self.nthreads > 1 else None
        self._encoder = SlabEncoder(
            self.axes.shape, self.chunks, self.level, pool, self.frames_in_flight, self.nthreads
        )
        self._file, entry = new_file(self._tmp, self.path, self.provenance)
        stack.callback(self._file.close)
        self._dset = create_series_group(entry, self.axes, self.chunks, self.level, self.resizable)
        # Slabs are joined and written by a thread of their own (closed before the file).
        self._writing: Future | None = None
        self._io = stack.enter_context(ThreadPoolExecutor(1)) if pool is not None else None
        self._slab_start = 0
        return self

    @property
    def frames_in_flight(self) -> int:
        """At most this many added frames may still be read by compression threads.

        One is enough: its tiles keep every thread busy while the next frame is
        read; more only cost memory (measured: same time, +25 MB per frame).
        """
        return 1 if self.nthreads > 1 else 0

    def add_raw_frame(self, frame) -> None:
        """Append the next frame as read (a RawFrame): masked and deflated in threads."""
        self._encoder.add_raw(frame)
        self._after_add()

    @property
    def masked_dynamic(self) -> int:
        """Pixels masked by the trusted range/shadow in the frames encoded so far."""
        return self._encoder.masked_dynamic

    def _after_add(self) -> None:
        if self._encoder.n_queued == self.chunks[0]:
            self._flush_slab()

    def _flush_slab(self) -> None:
        """Write the queued frames as one slab of chunks.

        With threads, the slab is joined and written in the I/O thread while the
        next slab is read and compressed: writing is ~30% of an Eiger 16M import
        (measured: 8 ms per 2.5 MB chunk, the page cache filling at ~300 MB/s on
        these machines), time the compression threads used to sit idle. One
        slab is written at a time, so at most one waits in memory beside the
        one being filled (and it shrinks as its tiles go out).
        """
        n = self._encoder.n_queued
        if n == 0:
            return
        start = self._slab_start
        self._slab_start += n
        frames = self._encoder.take_slab()
        if self._io is None:
            self._write_slab(start, frames)
            return
        self._wait_for_write()
        self._writing = self._io.submit(self._write_slab, start, frames)

    def _write_slab(self, start: int, frames: list) -> None:
        for (y0, x0), payload in self._encoder.chunks_of(frames, self._dset.chunks[0]):
            ensure_space(self._tmp, len(payload))  # HDF5 must never meet a full disk
            self._dset.id.write_direct_chunk((start, y0, x0), payload)

    def _wait_for_write(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()  # a failed write (a full disk) raises here

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._flush_slab()
                self._wait_for_write()
                if self._slab_start != self.axes.shape[0]:
                    raise RuntimeError(f"wrote {self._slab_start} of {self.axes.shape[0]} frames")
            except BaseException:
                self._stack.__exit__(*sys.exc_info())
                raise
        # Closing the stack ends the threads, closes the file, then renames it into place
        # (or deletes it).
        self._stack.__exit__(exc_type, exc, tb)


def assemble_series(
    target: SeriesTarget,
    axes: SeriesAxes,
    parts: list[tuple[Path, int, int]],
    parts_dir: Path,
) -> None:
    """Join part files (each frames [a, b) of the series) into the final output, atomically.

    ``target.split``: the parts folder is renamed to ``<output stem>_parts``
    and the main file maps it with a virtual dataset (paths relative to the
    main file). Otherwise the compressed chunks are copied as they are into
    one file (no recompression) and the parts are deleted. The caller's
    :func:`~dials_mdxbg.util.atomic.atomic_dir` renames (or deletes) ``parts_dir``.
    """
    output, split = Path(target.output), target.split
    check_writable(output)
    final_parts = output.with_name(output.stem + "_parts")
    with atomic_path(output) as tmp:
        f, entry = new_file(tmp, output, target.provenance)
        with f:
            if split:
                group = nxdata(entry, IMAGE_SERIES, "data", "mdx2.data", "ImageSeries")
                for name in ("phi", "iy", "ix", "exposure_times"):
                    group.create_dataset(name, data=np.asarray(getattr(axes, name), np.float64))
                layout = h5py.VirtualLayout(shape=axes.shape, dtype=np.int32)
                for path, a, b in parts:
                    layout[a:b] = h5py.VirtualSource(
                        f"{final_parts.name}/{Path(path).name}",
                        f"/entry/{IMAGE_SERIES}/data",
                        shape=(b - a, *axes.shape[1:]),
                    )
                group.create_virtual_dataset("data", layout, fillvalue=-1)
                describe_fields(group)
            else:
                dset = create_series_group(entry, axes, target.chunks, target.level)
                for path, a, _ in parts:
                    with h5py.File(path, "r") as part:
                        _copy_chunks(part[f"/entry/{IMAGE_SERIES}/data"], dset, a)


def _copy_chunks(source: h5py.Dataset, target: h5py.Dataset, frame0: int) -> None:
    """Copy every stored chunk of ``source`` into ``target`` at frame offset ``frame0``."""
    if source.chunks != target.chunks:
        raise RuntimeError(f"part chunks {source.chunks} differ from {target.chunks}")
    cf, cy, cx = source.chunks
    n, ny, nx = source.shape
    for f0 in range(0, n, cf):
        for y0 in range(0, ny, cy):
            for x0 in range(0, nx, cx):
                filter_mask, payload = source.id.read_direct_chunk((f0, y0, x0))
                ensure_space(Path(target.file.filename), len(payload))
                target.id.write_direct_chunk((frame0 + f0, y0, x0), payload, filter_mask)
