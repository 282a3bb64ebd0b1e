"""Worker for dials.mdx_bin_background: image series or frames -> binned map.

Both inputs feed the same block accumulator (:mod:`dials_mdxbg.binning`),
so binning a file written by dials.mdx_import and binning the frames
directly give the same map to the last bit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from dials_mdxbg.binning import BinGrid, BinSums, accumulate_block, axis_bin_means, finalize
from dials_mdxbg.cli import Progress
from dials_mdxbg.errors import InputError
from dials_mdxbg.frames import FrameSource, RawFrame, frame_source
from dials_mdxbg.nexus import ImageSeriesReader, SeriesAxes, read_mdx2_mask

logger = logging.getLogger("dials.mdxbg.background")

# (frame0, row0, loader): the loader returns an int32 block (frames, rows, nx),
# or a RawFrame (one frame, not yet masked) when binning straight from frames.
BlockTask = tuple[int, int, Callable[[], np.ndarray]]


@dataclass
class BinnedMap:
    """The binned background and what goes with it into the file."""

    phi: np.ndarray
    iy: np.ndarray
    ix: np.ndarray
    signal: np.ndarray
    errors: np.ndarray
    count: np.ndarray
    estimator: str
    ny_nx: tuple[int, int] = (0, 0)

    def extra_datasets(self) -> dict[str, np.ndarray]:
        """Datasets stored beside mdx2's signal and axes."""
        # float32 errors and int32 counts are plenty, and keep the file small.
        return {
            "errors": self.errors.astype(np.float32),
            "pixel_count": self.count.astype(np.int32),
        }

    def phi_table(self) -> list[dict]:
        """Per phi bin: centre, mean/min/max counts/s and fraction of empty bins."""
        rows = []
        for k, phi in enumerate(self.phi):
            plane = self.signal[k]
            finite = plane[np.isfinite(plane)]
            rows.append(
                {
                    "phi": float(phi),
                    "mean": float(finite.mean()) if finite.size else float("nan"),
                    "min": float(finite.min()) if finite.size else float("nan"),
                    "max": float(finite.max()) if finite.size else float("nan"),
                    "empty_fraction": float(1.0 - finite.size / plane.size),
                }
            )
        return rows


def check_bins(bins, valid_range) -> tuple[tuple[int, int, int], tuple[int, int] | None]:
    """Validate ``bins`` and ``valid_range`` with one-line errors."""
    if bins is None or len(bins) != 3 or any(b is None or b < 1 for b in bins):
        raise InputError(f"bins must be three positive integers (frames, y, x), got {bins}")
    if valid_range is not None:
        if len(valid_range) != 2:
            raise InputError(f"valid_range needs two numbers (min, max), got {valid_range}")
        if valid_range[0] > valid_range[1]:
            raise InputError(
                f"valid_range min {valid_range[0]} is greater than max {valid_range[1]}"
            )
        valid_range = (int(valid_range[0]), int(valid_range[1]))
    return tuple(int(b) for b in bins), valid_range


def _reduce(
    tasks: Iterable[BlockTask],
    grid: BinGrid,
    consume: Callable[[BinSums, int, int, np.ndarray], None],
    nproc: int,
) -> BinSums:
    """Run ``consume`` over all blocks in ``nproc`` threads and merge the sums.

    Each thread owns an accumulator; integer sums make the merge order
    irrelevant, so the result is identical for any nproc. At most 2*nproc
    blocks are in flight, which bounds memory.
    """
    if nproc <= 1:
        acc = BinSums.zeros(grid.out_shape)
        for frame0, row0, load in tasks:
            consume(acc, frame0, row0, load())
        return acc
    local = threading.local()
    accs: list[BinSums] = []
    lock = threading.Lock()

    def work(task: BlockTask) -> None:
        acc = getattr(local, "acc", None)
        if acc is None:
            acc = local.acc = BinSums.zeros(grid.out_shape)
            with lock:
                accs.append(acc)
        frame0, row0, load = task
        consume(acc, frame0, row0, load())

    with ThreadPoolExecutor(nproc) as pool:
        inflight: deque = deque()
        for task in tasks:
            inflight.append(pool.submit(work, task))
            while len(inflight) >= 2 * nproc:
                inflight.popleft().result()
        for future in inflight:
            future.result()
    total = accs[0]
    for other in accs[1:]:
        total.merge(other)
    return total


def _expand(per_bin: np.ndarray, grid: BinGrid, frame0: int, row0: int, shape) -> np.ndarray:
    """Per-bin values (nphi, nby, nbx) broadcast to the pixels of a block."""
    n, rows, nx = shape
    f_bins = grid.phi_index[frame0 : frame0 + n]
    y_bins = grid.y_index[row0 : row0 + rows]
    x_bins = np.repeat(np.arange(len(grid.x_sizes)), grid.x_sizes)
    return per_bin[f_bins][:, y_bins][:, :, x_bins]


def clip_threshold(sums: BinSums, n_sigma: float) -> np.ndarray:
    """Per-bin count above which the clipped mean rejects a pixel."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.total / sums.count
    # Poisson sigma of a count; floor at 1 so near-empty bins still clip.
    threshold = mean + n_sigma * np.sqrt(np.maximum(mean, 1.0))
    threshold[~np.isfinite(threshold)] = np.inf
    return threshold


def block_sums(
    tasks: Iterable[BlockTask],
    grid: BinGrid,
    valid_range: tuple[int, int] | None = None,
    excluded: Callable[[int, int, tuple], np.ndarray] | None = None,
    threshold: np.ndarray | None = None,
    nproc: int = 1,
) -> BinSums:
    """Exact bin sums of the blocks (those above ``threshold`` left out, if given)."""

    def consume(acc: BinSums, frame0: int, row0: int, block) -> None:
        if isinstance(block, RawFrame):
            # A frame straight from the detector: mask and bin in one pass if we can.
            if excluded is None and threshold is None:
                if block.bin_into(acc, grid, frame0, valid_range) is not None:
                    return
            block = block.masked()[0][np.newaxis]
        ex = excluded(frame0, row0, block.shape) if excluded else None
        keep = None
        if threshold is not None:
            keep = block <= _expand(threshold, grid, frame0, row0, block.shape)
        accumulate_block(acc, grid, block, frame0, row0, valid_range, ex, keep)

    return _reduce(tasks, grid, consume, nproc)


def bin_map(
    sums_for: Callable[[np.ndarray | None], BinSums],
    axes: SeriesAxes,
    bins: tuple[int, int, int],
    estimator: str = "mean",
    n_sigma: float = 5.0,
) -> BinnedMap:
    """The binned map from a source of sums.

    Args:
        sums_for: ``threshold -> BinSums`` over the whole series; called once
            (mean) or twice (clipped mean, the second time with the per-bin
            threshold). Local threads and dask tasks both fit behind it.
        axes: the series axes.
        bins: bin size (frames, y, x).
        estimator: "mean" (mdx2's) or "clipped_mean".
        n_sigma: clipping threshold above the mean, in Poisson sigmas.
    """
    if estimator not in ("mean", "clipped_mean"):
        raise InputError(f"unknown estimator {estimator}")
    grid = BinGrid(axes.shape, bins)
    sums = sums_for(None)
    if estimator == "clipped_mean":
        sums = sums_for(clip_threshold(sums, n_sigma))
    signal, errors, count = finalize(sums, grid, axes.exposure_times)
    return BinnedMap(
        phi=axis_bin_means(axes.phi, bins[0]),
        iy=axis_bin_means(axes.iy, bins[1]),
        ix=axis_bin_means(axes.ix, bins[2]),
        signal=signal,
        errors=errors,
        count=count,
        estimator=estimator,
        ny_nx=axes.shape[1:],
    )


def bin_blocks(
    make_tasks: Callable[[], Iterator[BlockTask]],
    axes: SeriesAxes,
    bins: tuple[int, int, int],
    valid_range: tuple[int, int] | None = None,
    excluded: Callable[[int, int, tuple], np.ndarray] | None = None,
    estimator: str = "mean",
    n_sigma: float = 5.0,
    nproc: int = 1,
) -> BinnedMap:
    """Bin a series given as blocks, in this process (``nproc`` threads).

    Args:
        make_tasks: returns a fresh iterator of block tasks covering the series
            once (called twice for the clipped mean).
        axes: the series axes.
        bins: bin size (frames, y, x).
        valid_range: inclusive count range, or None.
        excluded: optional ``(frame0, row0, shape) -> bool array`` (True = excluded).
        estimator: "mean" (mdx2's) or "clipped_mean".
        n_sigma: clipping threshold above the mean, in Poisson sigmas.
        nproc: threads.
    """
    grid = BinGrid(axes.shape, bins)

    def sums_for(threshold):
        return block_sums(make_tasks(), grid, valid_range, excluded, threshold, nproc)

    return bin_map(sums_for, axes, bins, estimator, n_sigma)


def series_tasks(
    reader: ImageSeriesReader,
    progress: Progress | None = None,
    frame_range: tuple[int, int] | None = None,
):
    """Block tasks from an image series file (decoding happens in the workers)."""

    def make() -> Iterator[BlockTask]:
        last = 0
        for frame0, row0, load in reader.iter_block_loaders(frame_range):
            if progress is not None and frame0 > last:
                progress.update(frame0)
                last = frame0
            yield frame0, row0, load
        if progress is not None:
            progress.update(reader.shape[0])

    return make


def frame_tasks(
    source: FrameSource,
    progress: Progress | None = None,
    frame_range: tuple[int, int] | None = None,
):
    """Block tasks straight from frames: read here (dxtbx holds the GIL), mask and
    reduce in the workers."""
    start, stop = frame_range or (0, source.n_frames)

    def make() -> Iterator[BlockTask]:
        for k in range(start, stop):
            frame = source.read_raw(k)
            yield k, 0, (lambda f=frame: f)
            if progress is not None:
                progress.update(k + 1 - start)

    return make


def mdx2_mask_excluder(mask_dset) -> Callable[[int, int, tuple], np.ndarray]:
    """Read the matching part of an mdx2 mask (True = excluded) for a block."""
    lock = threading.Lock()  # h5py datasets are not safe to read from two threads

    def excluded(frame0: int, row0: int, shape: tuple) -> np.ndarray:
        n, rows, _ = shape
        with lock:
            return np.asarray(mask_dset[frame0 : frame0 + n, row0 : row0 + rows, :], dtype=bool)

    return excluded


@dataclass
class BinSource:
    """Where a binning job reads its counts: picklable, so a dask worker can open it.

    Either ``series`` (an image series file, with an optional mdx2 ``mask``) or
    ``experiments`` (experiment list JSON) with ``selection`` (keyword
    arguments of :func:`dials_mdxbg.frames.frame_source`).
    """

    series: str | None = None
    mask: str | None = None
    experiments: str | None = None
    selection: dict | None = None

    @contextlib.contextmanager
    def open(self) -> Iterator[tuple[SeriesAxes, Callable, Callable | None, int]]:
        """Yield (axes, tasks_for(frame_range, progress), excluded, frames per block)."""
        if self.series:
            with ImageSeriesReader(self.series) as reader:
                excluded = None
                if self.mask:
                    excluded = mdx2_mask_excluder(read_mdx2_mask(self.mask, reader.shape))

                def tasks_for(frame_range=None, progress=None):
                    return series_tasks(reader, progress, frame_range)

                yield reader.axes, tasks_for, excluded, reader.block_frames
        else:
            from dxtbx.model.experiment_list import ExperimentListFactory

            experiments = ExperimentListFactory.from_dict(json.loads(self.experiments))
            source = frame_source(experiments, **self.selection)

            def tasks_for(frame_range=None, progress=None):
                return frame_tasks(source, progress, frame_range)

            yield source.axes, tasks_for, None, 1


def range_sums(
    src: BinSource,
    bins: tuple[int, int, int],
    valid_range: tuple[int, int] | None,
    frame_range: tuple[int, int],
    threshold: np.ndarray | None,
) -> BinSums:
    """One dask task: exact bin sums of frames [a, b) (zero elsewhere)."""
    with src.open() as (axes, tasks_for, excluded, _):
        grid = BinGrid(axes.shape, bins)
        return block_sums(tasks_for(frame_range)(), grid, valid_range, excluded, threshold)


def bin_source(
    src: BinSource,
    bins: tuple[int, int, int],
    valid_range: tuple[int, int] | None = None,
    estimator: str = "mean",
    n_sigma: float = 5.0,
    nproc: int = 1,
    engine=None,
    frames_per_task: int | None = None,
) -> tuple[BinnedMap, int]:
    """Bin ``src`` here (``nproc`` threads), or as frame-range tasks on a dask engine.

    Integer sums make both give the same map to the last bit, whatever the
    partition. Returns the map and the number of frames binned.
    """
    with src.open() as (axes, tasks_for, excluded, block_frames):
        n = axes.shape[0]
        if engine is None:
            make_tasks = tasks_for(None, Progress(n, "frames"))
            binned = bin_blocks(
                make_tasks, axes, bins, valid_range, excluded, estimator, n_sigma, nproc
            )
            return binned, n

        from dials_mdxbg.cluster import frame_ranges, run_tasks

        grid = BinGrid(axes.shape, bins)
        workers = engine.n_workers
        parts = (
            math.ceil(n / frames_per_task) if frames_per_task else engine.tasks_per_worker * workers
        )
        ranges = frame_ranges(n, parts, block_frames)
        logger.info(
            "Binning %d frames as %d tasks on %d %s workers",
            n,
            len(ranges),
            workers,
            engine.name,
        )

        def sums_for(threshold):
            arguments = [(src, bins, valid_range, r, threshold) for r in ranges]
            results = run_tasks(engine, range_sums, arguments, "frame ranges")
            total = BinSums.zeros(grid.out_shape)
            for part in results:
                total.merge(part)
            return total

        return bin_map(sums_for, axes, bins, estimator, n_sigma), n
