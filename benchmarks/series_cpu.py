"""Binning an image series in-process: thread CPU seconds against its inflate floor.

Thread CPU time (not wall time) of one thread, best of ``--repeats``, so that
a loaded machine disturbs it less: fetching every stored chunk
(``read_direct_chunk``), inflating them (C, libdeflate), binning the series
from blocks of counts (arrays), and binning it while the chunks inflate
(stored blocks, what the commands do); the histogram of the report's sampled
frames is counted in both unless ``--no-histogram``; and the check of a given
valid_range that the command makes before binning (reading the 5 frames of
``binning.valid_auto`` and counting their values; process CPU, as a worker
thread reads them). Example::

    python benchmarks/series_cpu.py bench/runs/f50_m5x12/nproc1/rep0/ours_import/X.nxs
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _best(run, repeats: int, clock=time.thread_time) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        run()
        best = min(best, clock() - t0)
    return best


def measure(
    series: str, bins: tuple[int, int, int], valid_range, repeats: int, histogram: bool = True
) -> dict:
    """The five thread CPU times (s) and the series' shape."""
    from dials_mdxbg.binning.blocks import block_sums
    from dials_mdxbg.binning.grid import BinGrid
    from dials_mdxbg.binning.histogram import sampled_frames
    from dials_mdxbg.native.chunk_codec import inflate_into
    from dials_mdxbg.series.reader import ImageSeriesReader, series_tasks

    with ImageSeriesReader(series) as reader:
        dset = reader.segments[0].dset
        cf, cy, cx = dset.chunks
        origins = [
            (f, y, x)
            for f in range(0, dset.shape[0], cf)
            for y in range(0, dset.shape[1], cy)
            for x in range(0, dset.shape[2], cx)
        ]
        payloads = [dset.id.read_direct_chunk(o)[1] for o in origins]
        planes = np.empty(4 * cf * cy * cx, dtype=np.uint8)
        grid = BinGrid(reader.shape, bins)
        first = sampled_frames(reader.shape[0])

        def binned(first_frames):
            tasks = series_tasks(reader, None, None, first_frames)()
            return lambda: block_sums(tasks, grid, valid_range, nproc=1, histogram=histogram)

        def bin_arrays():
            binned(None)()

        def bin_stored():
            binned(first)()

        def fetch():
            for o in origins:
                dset.id.read_direct_chunk(o)

        def inflate():
            for p in payloads:
                inflate_into(p, planes)

        def valid_range_check():
            from dials_mdxbg.binning.valid_auto import sample_histogram
            from dials_mdxbg.jobs.inputs import BinSource

            with BinSource.from_series(series).open() as opened:
                sample_histogram(opened, 1)

        return {
            "shape": list(reader.shape),
            "chunks": [cf, cy, cx],
            "fetch_s": _best(fetch, repeats),
            "inflate_s": _best(inflate, repeats),
            "bin_arrays_s": _best(bin_arrays, repeats),
            "bin_stored_blocks_s": _best(bin_stored, repeats),
            # its blocks are read by a worker thread: the process's CPU time
            "valid_range_check_s": _best(valid_range_check, repeats, time.process_time),
        }


def main(argv: list[str] | None = None) -> None:
    """Print the measurements as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series")
    parser.add_argument("--bins", type=int, nargs=3, default=[10, 20, 20])
    parser.add_argument("--valid-range", type=int, nargs=2, default=[0, 200])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--no-histogram", action="store_true", help="as without a report (the benchmark's runs)"
    )
    args = parser.parse_args(argv)
    bins = (args.bins[0], args.bins[1], args.bins[2])
    result = measure(
        args.series, bins, tuple(args.valid_range), args.repeats, not args.no_histogram
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
