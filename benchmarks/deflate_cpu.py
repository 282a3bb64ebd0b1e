"""The import's mask + deflate of a frame's tiles, and its deflate alone on each byte plane.

Reads the first ``--frames`` frames of an image series (already masked: masked
pixels are -1, which a trusted range of (-2, inf) keeps), then

- ``encode_tiles``: thread CPU per frame (best of ``--repeats``) of
  ``native.chunk_codec.encode_tiles`` over the frame's (cy, cx) tiles, as
  ``dials.mdx_import`` calls it at nproc 1, and the compressed bytes per
  uncompressed byte (all four planes);
- per byte plane k (0: low byte) of the first tile: ns per byte and
  compressed/uncompressed of ``mdx_deflate_huffman`` (the C call alone, when
  built) and of ``chunk_codec.encode_segment`` at level 1 (the Python twin's
  piece: the isal package, adler-32 included; the C path before issue 23's
  Huffman coder used ISA-L level 1 with a 256-byte window).

Run it under each tree's ``PYTHONPATH`` to compare them. Example::

    PYTHONPATH=/work/wt-huff/src python benchmarks/deflate_cpu.py x.nxs --frames 10
"""

from __future__ import annotations

import argparse
import json
import time

import h5py
import numpy as np


def _best(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.thread_time()
        function()
        best = min(best, time.thread_time() - t0)
    return best


def measure(series: str, frames: int, chunk_yx: tuple[int, int], repeats: int) -> dict:
    """Per-frame encode and per-plane deflate figures (see the module docstring)."""
    from dials_mdxbg.native import chunk_codec as codec
    from dials_mdxbg.native import lib

    with h5py.File(series, "r") as f:
        stack = f["entry/image_series/data"][:frames]
    ny, nx = stack.shape[1:]
    cy, cx = chunk_yx
    tiles = np.array([(y, x) for y in range(0, ny, cy) for x in range(0, nx, cx)], np.int64)
    valid = np.ones((ny, nx), dtype=bool)
    trusted = (-2.0, float("inf"))
    encode_s, packed = [], 0
    for frame in stack:
        encode_s.append(
            _best(lambda: codec.encode_tiles(frame, valid, trusted, (cy, cx), tiles, 1), repeats)
        )
        pieces, _ = codec.encode_tiles(frame, valid, trusted, (cy, cx), tiles, 1)
        packed += sum(len(p[0]) for tile in pieces for p in tile)
    planes = codec.shuffle(np.ascontiguousarray(stack[0, :cy, :cx])).reshape(4, -1)
    per_plane = []
    for k in range(4):
        plane = np.ascontiguousarray(planes[k])
        row = {"plane": k}
        coders = {"isal1": lambda b: codec.encode_segment(b, 1)[0]}  # the twin's piece
        if lib.loaded() and hasattr(codec, "deflate_huffman"):  # not in trees before it
            out = np.empty(plane.size * 2 + 1024, np.uint8)  # the C call alone, as C calls it
            call = lib.library().mdx_deflate_huffman
            coders["huffman"] = lambda b, out=out, call=call: out[
                : call(lib.ptr(b), b.size, lib.ptr(out), out.size)
            ]
        for name, deflate in coders.items():
            size = len(deflate(plane))
            seconds = _best(lambda: [deflate(plane) for _ in range(20)], repeats) / 20
            row[f"{name}_ns_per_byte"] = round(1e9 * seconds / plane.size, 3)
            row[f"{name}_ratio"] = round(size / plane.size, 4)
        per_plane.append(row)
    n_bytes = 4 * ny * nx
    return {
        "series": series,
        "frames": len(stack),
        "kernels": lib.describe(),
        "encode_ms_per_frame": round(1000 * float(np.median(encode_s)), 2),
        "encode_ns_per_byte": round(1e9 * float(np.median(encode_s)) / n_bytes, 3),
        "encoded_ratio": round(packed / (n_bytes * len(stack)), 4),
        "planes_of_first_tile": per_plane,
    }


def main(argv: list[str] | None = None) -> None:
    """Print the measurements as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--chunk", type=int, nargs=2, default=(211, 493))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.series, args.frames, tuple(args.chunk), args.repeats), indent=1))


if __name__ == "__main__":
    main()
