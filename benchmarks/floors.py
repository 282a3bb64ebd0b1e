"""Lower bounds for the benchmark: what no implementation on this stack can avoid.

Measures, on the same sweep and image series the benchmark uses:

* start-up: a fresh interpreter importing DIALS' ArgumentParser (every
  ``dials.*`` command, and mdx2, pay this), its wall time and peak RSS; and
  the same after ``dials_mdxbg.util.startup.prepare()`` (what our commands pay, with
  unused libraries deferred);
* read: ``imageset.get_raw_data(i)`` for every frame, nothing else;
* deflate: masking and deflating every frame's tiles at level 1 as our
  import does it (C, ISA-L), one core;
* inflate: decompressing every stored chunk of the image series, with ISA-L
  and with libdeflate (our binning; inflate + unshuffle into the block), one core.

Example::

    python benchmarks/floors.py /tmp/bench/sweep_f50_m5x12/background.expt \\
        /tmp/bench/runs/f50_m5x12/nproc1/rep0/ours_import/X.nxs
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from dials_mdxbg.util.startup import point_libtbx_at_debian_build

point_libtbx_at_debian_build()


def startup() -> dict:
    """Wall time and peak RSS of a process that only imports DIALS' parser (plain, and ours)."""
    result = {}
    ours = "from dials_mdxbg.util.startup import prepare; prepare()"
    plain = "from dials_mdxbg.util.startup import point_libtbx_at_debian_build as p; p()"
    for name, first in (("dials_parser", plain), ("ours", ours)):
        code = (
            f"import resource; {first}; from dials.util.options import ArgumentParser; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        )
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        result[f"{name}_s"] = time.perf_counter() - t0
        result[f"{name}_peak_mb"] = int(out.stdout.split()[-1]) / 1024
    return result


def read_and_deflate(expt: str, chunks: tuple[int, int] = (211, 493)) -> dict:
    """Seconds to read every frame with dxtbx, and to mask + deflate its tiles (level 1)."""
    import numpy as np
    from dxtbx import flumpy
    from dxtbx.model.experiment_list import ExperimentListFactory

    from dials_mdxbg.native.backend import backend

    imageset = ExperimentListFactory.from_json_file(expt).imagesets()[0]
    t_read = t_deflate = 0.0
    tiles = None
    for i in range(len(imageset)):
        t0 = time.perf_counter()
        frame = flumpy.to_numpy(imageset.get_raw_data(i)[0])
        t_read += time.perf_counter() - t0
        if tiles is None:
            ny, nx = frame.shape
            grid = [(y, x) for y in range(0, ny, chunks[0]) for x in range(0, nx, chunks[1])]
            tiles = np.array(grid, dtype=np.int64)
            valid = np.ones(frame.shape, dtype=bool)
        t1 = time.perf_counter()
        backend().encode_tiles(frame, valid, (-1.0, 1e6), chunks, tiles, 1)
        t_deflate += time.perf_counter() - t1
    return {"frames": len(imageset), "read_s": t_read, "mask_deflate_s": t_deflate}


def inflate(series: str) -> dict:
    """Seconds to fetch and inflate every stored chunk (ISA-L; libdeflate into a block)."""
    import h5py
    import numpy as np

    from dials_mdxbg.encode.codec import _deflate
    from dials_mdxbg.native.backend import backend

    with h5py.File(series, "r") as f:
        d = f["entry/image_series/data"]
        cf, cy, cx = d.chunks
        payloads = [
            (x0, d.id.read_direct_chunk((f0, y0, x0))[1])
            for f0 in range(0, d.shape[0], cf)
            for y0 in range(0, d.shape[1], cy)
            for x0 in range(0, d.shape[2], cx)
        ]
        block = np.empty((cf, cy, d.shape[2]), dtype=np.int32)
    # Separate passes: interleaving the two would let each evict the other's caches.
    t0 = time.perf_counter()
    for _, payload in payloads:
        _deflate.decompress(payload)
    t_isal = time.perf_counter() - t0
    t0 = time.perf_counter()
    kernels = backend()
    for x0, payload in payloads:
        kernels.decode_chunk_into(payload, (cf, cy, cx), block, x0)
    t_libdeflate = time.perf_counter() - t0
    return {"inflate_isal_s": t_isal, "inflate_libdeflate_into_block_s": t_libdeflate}


def main(argv: list[str] | None = None) -> None:
    """Print the floors as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("expt")
    parser.add_argument("series")
    args = parser.parse_args(argv)
    result = {"startup": startup(), **read_and_deflate(args.expt), **inflate(args.series)}
    result["self_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
