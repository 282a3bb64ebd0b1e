"""Lower bounds for the benchmark: what no implementation on this stack can avoid.

Measures, on the same sweep and image series the benchmark uses:

* start-up: a fresh interpreter importing DIALS' ArgumentParser (every
  ``dials.*`` command, and mdx2, pay this), its wall time and peak RSS; and
  the same after ``dials_mdxbg.util.startup.prepare()`` (what our commands pay, with
  unused libraries deferred);
* read: ``imageset.get_raw_data(i)`` for every frame, nothing else; also our
  direct reader, which the commands use instead, one core: for NXmx (Eiger)
  ``read_direct_chunk`` plus the C bitshuffle/LZ4 decode, for byte-offset CBF
  the file's bytes, gzip/bzip2 and the C byte-offset decode;
* deflate: masking and deflating every frame's tiles at level 1 as our
  import does it (C, ISA-L), one core;
* inflate: decompressing every stored chunk of the image series, with ISA-L
  and with libdeflate (our binning; inflate + unshuffle into the block), one core;
* loading the experiment list with format checks, and without them plus
  what ``frames.unchecked`` rebuilds (fresh processes);
* each command, run once under ``python -X importtime`` (nproc 1, no picture or
  report): its wall time, the seconds of imports by top-level package, and
  which of the libraries a run should not need (:data:`WATCHED`) it imported.

Per-frame floors (``ms_per_frame``) divide each by the frames of the sweep.

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


def load_experiments(expt: str) -> dict:
    """Seconds to load ``expt``, each way in a fresh process after our start-up.

    ``checked_s``: with format checks (what the commands did before; the
    format class opened, imported, its static mask built); ``unchecked_s``:
    without, plus what :mod:`dials_mdxbg.frames.unchecked` rebuilds from the
    files (format class, reader, pixel_mask, mask file), what they do now;
    ``*_cpu_s``: the process's CPU seconds for the same (less moved by load).
    """
    setup = (
        "import sys, time; from dials_mdxbg.util.startup import prepare; prepare(); "
        "from dxtbx.model.experiment_list import ExperimentListFactory as F; "
        "from dials_mdxbg.frames import unchecked; "
        "t0, c0 = time.perf_counter(), time.process_time(); "
    )
    ways = {
        "checked_s": f"F.from_json_file({expt!r}, check_format=True)",
        "unchecked_s": f"unchecked.unchecked_frames(F.from_json_file({expt!r}, "
        "check_format=False).imagesets()[0])",
    }
    result = {}
    for name, load in ways.items():
        code = f"{setup}{load}; print(time.perf_counter() - t0, time.process_time() - c0)"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        wall, cpu = out.stdout.split()[-2:]
        result[name], result[name.replace("_s", "_cpu_s")] = float(wall), float(cpu)
    return result


#: What each command's start-up must not import unless the run uses it.
WATCHED = ("pint", "pkg_resources", "pandas", "sklearn", "dask", "matplotlib", "hdf5plugin")


def parse_importtime(stderr: str) -> dict:
    """Seconds of imports by top-level module from ``python -X importtime`` output."""
    by_root: dict[str, float] = {}
    loaded: set[str] = set()
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if not cumulative.strip().isdigit():
            continue  # the header line
        loaded.add(name.strip().split(".")[0])
        if not name.startswith(" ") or name.startswith("  "):
            continue  # nested: counted in its top-level import
        root = name.strip().split(".")[0]
        by_root[root] = by_root.get(root, 0.0) + int(cumulative) / 1e6
    top = dict(sorted(by_root.items(), key=lambda kv: -kv[1])[:8])
    return {
        "imports_s": sum(by_root.values()),
        "top_imports_s": top,
        "watched_imported": sorted(m for m in WATCHED if m in loaded),
    }


def command_startup(expt: str, series: str, workdir: str | None = None) -> dict:
    """Each command run once under ``-X importtime``: wall time, and what it imported.

    The one step and the import read ``expt``; binning reads ``series``. No
    picture or report, as the benchmark runs them. Outputs go to a temporary
    folder.
    """
    import shutil
    import tempfile
    from pathlib import Path

    bindir = Path(sys.executable).parent
    runs = {
        "import": ["dials.mdx_import", expt, "output.data=X.nxs"],
        "bin_series": ["dials.mdx_bin_background", series, "output.binned=Y.nxs"],
        "one_step": ["dials.mdx_bin_background", expt, "output.binned=Z.nxs"],
    }
    quiet = ["output.plot=None", "output.html=None", "mp.nproc=1"]
    result = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for name, (command, *args) in runs.items():
            script = shutil.which(command, path=str(bindir)) or command
            extra = quiet if command == "dials.mdx_bin_background" else ["mp.nproc=1"]
            cmd = [sys.executable, "-X", "importtime", script, *args, *extra]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"{command} failed:\n{proc.stderr[-2000:]}")
            result[name] = {"wall_s": wall, **parse_importtime(proc.stderr)}
    return result


def read_and_deflate(expt: str, chunks: tuple[int, int] = (211, 493)) -> dict:
    """Seconds to read every frame with dxtbx, and to mask + deflate its tiles (level 1)."""
    import numpy as np
    from dxtbx import flumpy
    from dxtbx.model.experiment_list import ExperimentListFactory

    from dials_mdxbg.native.chunk_codec import encode_tiles
    from dials_mdxbg.util.startup import load_hdf5_filters

    load_hdf5_filters()  # Eiger bitshuffle/LZ4, as the commands do
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
        encode_tiles(frame, valid, (-1.0, 1e6), chunks, tiles, 1)
        t_deflate += time.perf_counter() - t1
    result = {"frames": len(imageset), "read_s": t_read, "mask_deflate_s": t_deflate}
    result.update(read_direct(imageset))
    return result


def read_direct(imageset) -> dict:
    """Seconds to read (I/O) and decode every frame with our direct reader, if one applies.

    NXmx (Eiger): the stored chunk, then the C bitshuffle/LZ4 decode. CBF: the
    file's bytes, then gzip/bzip2 (``read_direct_decompress_s``, timed on its
    own too: for bzip2 it is the floor) and the C byte-offset decode.
    """
    from dials_mdxbg.frames.cbf_direct import CBFDirect, EncodedCBF, decompress_file
    from dials_mdxbg.frames.nxmx_direct import NXmxDirect

    reader = NXmxDirect.for_imageset(imageset) or CBFDirect.for_imageset(imageset)
    if reader is None:
        return {}
    t_io = t_decode = t_decompress = 0.0
    buffer = reader.take_buffer()
    for k in range(len(imageset)):
        t0 = time.perf_counter()
        encoded = reader.read(k)
        t1 = time.perf_counter()
        encoded.decode(buffer)
        t2 = time.perf_counter()
        t_io += t1 - t0
        t_decode += t2 - t1
        if isinstance(encoded, EncodedCBF):
            decompress_file(encoded.path, encoded.data)
            t_decompress += time.perf_counter() - t2
    if isinstance(reader, NXmxDirect):
        reader.close()
    result = {"read_direct_io_s": t_io, "read_direct_decode_s": t_decode}
    if isinstance(reader, CBFDirect):
        result["read_direct_decompress_s"] = t_decompress
    return result


def inflate(series: str) -> dict:
    """Seconds to fetch and inflate every stored chunk (ISA-L; libdeflate into a block)."""
    import h5py
    import numpy as np

    from dials_mdxbg.native.chunk_codec import _deflate, decode_chunk_into

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
    for x0, payload in payloads:
        decode_chunk_into(payload, (cf, cy, cx), block, x0)
    t_libdeflate = time.perf_counter() - t0
    return {"inflate_isal_s": t_isal, "inflate_libdeflate_into_block_s": t_libdeflate}


def main(argv: list[str] | None = None) -> None:
    """Print the floors as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("expt")
    parser.add_argument("series")
    parser.add_argument(
        "--chunks", type=int, nargs=2, default=[211, 493], metavar=("Y", "X"),
        help="tile (chunk) rows and columns for the deflate floor (default 211 493)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    result = {
        "startup": startup(),
        "load_experiments": load_experiments(args.expt),
        "commands": command_startup(args.expt, args.series),
        **read_and_deflate(args.expt, tuple(args.chunks)),
        **inflate(args.series),
    }
    n = result["frames"]
    result["ms_per_frame"] = {
        k: 1e3 * v / n for k, v in result.items() if k.endswith("_s") and isinstance(v, float)
    }
    result["self_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
