"""valid_range's sampled-value histogram: the C pass against its numpy twin (main's path).

Thread CPU, best of ``--repeats``, of counting one frame of an image series
in the row blocks the binning reads (``--rows`` rows each), as
``binning.valid_auto`` does for each of its 5 sampled frames. Example::

    python benchmarks/value_histogram_cpu.py bench/runs/f50_m5x12/nproc1/rep0/ours_import/X.nxs
"""

from __future__ import annotations

import argparse
import json
import time

import h5py
import numpy as np


def measure(series: str, frame: int, rows: int, repeats: int) -> dict:
    """Milliseconds per frame of the C kernel and of the numpy twin (same counts)."""
    from dials_mdxbg.binning.valid_auto import CAP
    from dials_mdxbg.native import lib
    from dials_mdxbg.native.value_histogram import count_values, count_values_numpy

    with h5py.File(series, "r") as f:
        image = f["entry/image_series/data"][frame]
    blocks = [np.ascontiguousarray(image[y : y + rows]) for y in range(0, image.shape[0], rows)]
    hists = {}
    best = {}
    for name, count in (("c", count_values), ("numpy", count_values_numpy)):
        hist = np.zeros(CAP + 1, dtype=np.int64)
        best[name] = float("inf")
        for _ in range(repeats):
            t0 = time.thread_time()
            for block in blocks:
                count(block, None, hist)
            best[name] = min(best[name], time.thread_time() - t0)
        hists[name] = hist
    assert np.array_equal(hists["c"], hists["numpy"])
    return {
        "frame_shape": list(image.shape),
        "blocks": len(blocks),
        "kernels": lib.describe(),
        "c_ms": round(1000 * best["c"], 2),
        "numpy_ms": round(1000 * best["numpy"], 2),
    }


def main(argv: list[str] | None = None) -> None:
    """Print the measurements as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series")
    parser.add_argument("--frame", type=int, default=12)
    parser.add_argument("--rows", type=int, default=211)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.series, args.frame, args.rows, args.repeats), indent=1))


if __name__ == "__main__":
    main()
