"""What this machine gives a second thread, and what memory touched for the first time costs.

Two facts bound what ``mp.nproc=2`` and every whole-command time can show here,
whatever the code does:

* **Two threads on work that never takes the GIL.** The same fixed amount of
  work run on one thread, then split over two (best of ``--repeats``): a
  memory copy of 72 MB arrays, zlib level 6 on 1 MB (branchy scalar code), our
  C bitshuffle/LZ4 decode of whole Eiger 16M frames into reused buffers, and
  the C decode-and-bin kernel the one step runs per Eiger frame. If the
  kernel itself gains 1.5x on two threads, no command built on it gains more.
* **Memory a process touches for the first time.** On a virtual machine that
  hands freed memory back to its host, each page first touched costs the
  host's fault; a fresh interpreter touching 256 MB once, then again after
  freeing it (the pages recycled), gives the cost per MB.

Example::

    python benchmarks/machine_scaling.py --eiger /path/eiger16m_data_000001.h5 --json out.json

Without ``--eiger`` a 4-frame 16M sweep is generated in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

FRESH_MB = 256

_TOUCH = f"""
import time, numpy as np
n = {FRESH_MB} << 20
t = time.perf_counter(); a = np.ones(n, np.uint8); first = time.perf_counter() - t
del a
t = time.perf_counter(); a = np.ones(n, np.uint8); again = time.perf_counter() - t
print(first, again)
"""


def fresh_memory() -> dict:
    """ms per MB of a fresh process's first touch of memory, and of touching recycled pages."""
    out = subprocess.run([sys.executable, "-c", _TOUCH], capture_output=True, text=True, check=True)
    first, again = (float(x) for x in out.stdout.split())
    return {
        "mb": FRESH_MB,
        "first_touch_ms_per_mb": 1e3 * first / FRESH_MB,
        "recycled_ms_per_mb": 1e3 * again / FRESH_MB,
    }


def _scaling(work, items: int, repeats: int) -> dict:
    """Best wall time of ``work(i)`` for i < items on one thread, then on two."""
    work(0)  # warm: buffers touched, code paged in
    one = two = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(items):
            work(i)
        one = min(one, time.perf_counter() - t)
        t = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(work, range(items)))
        two = min(two, time.perf_counter() - t)
    return {"one_thread_s": one, "two_threads_s": two, "gain": one / two}


def _eiger_chunks(path: Path | None, tmp: Path) -> tuple[list[bytes], tuple[int, int]]:
    import h5py

    if path is None:
        from dials_mdxbg.testing.eiger import write_nxmx_sweep

        write_nxmx_sweep(tmp, n_frames=4, shape=(4362, 4148), seed=3)
        path = next(tmp.glob("*_data_*.h5"))
    with h5py.File(path, "r") as f:
        d = f["/entry/data/data"]
        chunks = [d.id.read_direct_chunk((k, 0, 0))[1] for k in range(min(d.shape[0], 8))]
        return chunks, tuple(d.shape[1:])


def thread_scaling(eiger: Path | None, repeats: int) -> dict:
    """The gain of two threads over one on GIL-free work (see the module docstring)."""
    import zlib

    from dials_mdxbg.binning.grid import BinGrid
    from dials_mdxbg.binning.sums import BinSums
    from dials_mdxbg.native.bin_kernels import FrameBin, bslz4_bin_frame
    from dials_mdxbg.native.detector_codecs import bslz4_decode

    n = 18 << 20
    src = [np.ones(n, np.uint32) for _ in range(2)]
    dst = [np.zeros(n, np.uint32) for _ in range(2)]
    text = bytes(range(256)) * 4096
    results = {
        "memcpy_72mb": _scaling(lambda i: np.copyto(dst[i % 2], src[i % 2]), 16, repeats),
        "zlib6_1mb": _scaling(lambda i: zlib.compress(text, 6), 24, repeats),
    }
    with tempfile.TemporaryDirectory() as tmp:
        chunks, shape = _eiger_chunks(eiger, Path(tmp))
    outs = [np.empty(shape, np.uint32) for _ in range(2)]
    results["bslz4_decode_16m"] = _scaling(
        lambda i: bslz4_decode(chunks[i % len(chunks)], shape, np.uint32, outs[i % 2]),
        16,
        repeats,
    )
    grid = BinGrid((len(chunks), *shape), (1, 20, 20))
    sums = [BinSums.zeros(grid.out_shape) for _ in range(2)]
    valid = np.ones(shape, dtype=bool)

    def fused(i: int) -> None:
        k = i % len(chunks)
        to = FrameBin(grid.phi_index[k], grid.y_index, grid.x_edges, (0, 200), sums[i % 2])
        bslz4_bin_frame(chunks[k], 0, valid, (-1, 2**31 - 1), to)

    results["bslz4_decode_and_bin_16m"] = _scaling(fused, 16, repeats)
    return results


def main(argv: list[str] | None = None) -> int:
    """Measure and print; ``--json`` also writes the figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--eiger", type=Path, help="an Eiger data file (bitshuffle/LZ4 chunks)")
    p.add_argument("--repeats", type=int, default=3, help="best of this many (default 3)")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    result = {
        "fresh_memory": fresh_memory(),
        "two_threads": thread_scaling(args.eiger, args.repeats),
    }
    mem = result["fresh_memory"]
    print(
        f"first touch of memory: {mem['first_touch_ms_per_mb']:.2f} ms/MB "
        f"(recycled pages {mem['recycled_ms_per_mb']:.2f} ms/MB)"
    )
    for name, r in result["two_threads"].items():
        print(
            f"{name:26s} 1 thread {r['one_thread_s']:.3f} s, 2 threads {r['two_threads_s']:.3f} s:"
            f" {r['gain']:.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
