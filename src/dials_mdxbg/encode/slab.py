"""Frames -> compressed HDF5 chunks, one frame at a time (shuffle + deflate pieces)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dials_mdxbg.encode import codec
from dials_mdxbg.native.backend import backend


class SlabEncoder:
    """Compresses frames tile by tile into per-chunk deflate pieces.

    A chunk spans ``cf`` frames, but it is never held: each frame is
    deflated per tile and byte plane as it arrives (in threads when
    nproc > 1), and the pieces are joined into one standard zlib stream per
    chunk when the slab of frames is complete. Memory is the compressed
    slab plus a frame or two in flight.

    Frames come raw (:meth:`add_raw`); each thread masks and deflates its
    group of tiles with the native backend's ``encode_tiles`` (in C without
    the GIL, or the numpy reference with the isal package: the same data).
    """

    def __init__(
        self,
        shape,
        chunks,
        level: int,
        pool: ThreadPoolExecutor | None,
        max_inflight: int = 1,
        nthreads: int = 1,
    ):
        _, ny, nx = shape
        self.max_inflight = max_inflight
        self.chunks = chunks
        self.level = level
        self.pool = pool
        cf, cy, cx = chunks
        self.tiles = [(y0, x0) for y0 in range(0, ny, cy) for x0 in range(0, nx, cx)]
        # A frame's tiles are cut into one group per thread (one group without).
        groups = nthreads if pool is not None else 1
        bounds = np.linspace(0, len(self.tiles), min(groups, len(self.tiles)) + 1).astype(int)
        self._tile_groups = [
            np.array(self.tiles[a:b], dtype=np.int64).reshape(-1, 2)
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
        # A padding frame (or padding tile): all-zero planes, encoded once.
        self._zero = codec.encode_segment(np.zeros(cy * cx, dtype=np.uint8), level)
        # Per frame, a list of parts; each part is (or will be, as a future) a
        # list of (tile pieces, masked pixels) for consecutive tiles.
        self._frames: deque = deque()
        self._inflight: deque = deque()
        self.masked_dynamic = 0

    def _encode_raw(self, frame, tiles: np.ndarray) -> tuple[list, int]:
        _, cy, cx = self.chunks
        return backend().encode_tiles(
            frame.raw,
            frame.static_valid,
            frame.trusted_range,
            (cy, cx),
            tiles,
            self.level,
            frame.extra_valid,
        )

    def add_raw(self, frame) -> None:
        """Queue one raw frame (a :class:`dials_mdxbg.frames.source.RawFrame`)."""
        self._queue(self._encode_raw, frame, self._tile_groups)

    def _queue(self, encode, frame, tile_sets: list) -> None:
        """``encode(frame, tiles)`` for each set of tiles: now, or in the pool."""
        if self.pool is None:
            self._frames.append([encode(frame, tiles) for tiles in tile_sets])
            return
        parts = [self.pool.submit(encode, frame, tiles) for tiles in tile_sets]
        self._frames.append(parts)
        # Bound the frames in flight: each holds its input until encoded.
        self._inflight.append(parts)
        while len(self._inflight) > self.max_inflight:
            for future in self._inflight.popleft():
                future.result()

    def _tile_pieces(self, parts: list) -> list:
        per_tile = []
        for part in parts:
            pieces, n_dynamic = part if isinstance(part, tuple) else part.result()
            self.masked_dynamic += n_dynamic
            per_tile += pieces
        return per_tile

    def chunks_of_slab(self, depth: int) -> Iterator[tuple[tuple[int, int], bytes]]:
        """Join the queued frames' pieces into one chunk per tile (clears the queue).

        ``depth`` is the dataset's chunk depth; missing frames are zero padding.
        """
        cf = depth
        frames = [self._tile_pieces(parts) for parts in self._frames]
        self._frames.clear()
        self._inflight.clear()
        for i, tile in enumerate(self.tiles):
            pieces = []
            for k in range(4):
                pieces += [frame[i][k] for frame in frames]
                pieces += [self._zero] * (cf - len(frames))
            # Plane-major order: byte 0 of every element of the chunk, then byte 1...
            yield tile, codec.join_segments(pieces)

    @property
    def n_queued(self) -> int:
        """Frames queued since the last slab."""
        return len(self._frames)
