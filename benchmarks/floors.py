"""Lower bounds for the benchmark: what no implementation on this stack can avoid.

Measures, on the same sweep and image series the benchmark uses:

* start-up: a fresh interpreter importing DIALS' ArgumentParser (every
  ``dials.*`` command, and mdx2, pay this), its wall time and peak RSS;
* read: ``imageset.get_raw_data(i)`` for every frame, nothing else;
* deflate: ISA-L level-1 compression of every frame's shuffled bytes (the
  least an importer writing gzip chunks must do), one core;
* inflate: ISA-L decompression of every stored chunk of the image series (the
  least a reader of gzip chunks must do), one core.

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

import dials_mdxbg  # noqa: F401  (LIBTBX_BUILD)


def startup() -> dict:
    """Wall time and peak RSS of a process that only imports DIALS' parser."""
    code = (
        "import resource, dials_mdxbg; from dials.util.options import ArgumentParser; "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {"seconds": time.perf_counter() - t0, "peak_mb": int(out.stdout.split()[-1]) / 1024}


def read_and_deflate(expt: str) -> dict:
    """Seconds to read every frame with dxtbx, and to deflate each (level 1, shuffled)."""
    import numpy as np
    from dxtbx import flumpy
    from dxtbx.model.experiment_list import ExperimentListFactory

    from dials_mdxbg import codec

    imageset = ExperimentListFactory.from_json_file(expt).imagesets()[0]
    t_read = t_deflate = 0.0
    for i in range(len(imageset)):
        t0 = time.perf_counter()
        frame = flumpy.to_numpy(imageset.get_raw_data(i)[0])
        t1 = time.perf_counter()
        codec.encode_chunk(np.ascontiguousarray(frame, dtype=np.int32), 1)
        t2 = time.perf_counter()
        t_read += t1 - t0
        t_deflate += t2 - t1
    return {"frames": len(imageset), "read_s": t_read, "shuffle_deflate_s": t_deflate}


def inflate(series: str) -> dict:
    """Seconds to fetch and inflate every stored chunk of an image series."""
    import h5py

    from dials_mdxbg.codec import _deflate

    t_inflate = 0.0
    with h5py.File(series, "r") as f:
        d = f["entry/image_series/data"]
        cf, cy, cx = d.chunks
        for f0 in range(0, d.shape[0], cf):
            for y0 in range(0, d.shape[1], cy):
                for x0 in range(0, d.shape[2], cx):
                    _, payload = d.id.read_direct_chunk((f0, y0, x0))
                    t0 = time.perf_counter()
                    _deflate.decompress(payload)
                    t_inflate += time.perf_counter() - t0
    return {"inflate_s": t_inflate}


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
