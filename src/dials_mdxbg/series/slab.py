"""Frames -> compressed HDF5 chunks, one frame at a time (shuffle + deflate pieces)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from dials_mdxbg.native import chunk_codec as codec


class SlabEncoder:
    """Compresses frames tile by tile into per-chunk deflate pieces.

    A chunk spans ``cf`` frames, but it is never held: each frame is
    deflated per tile and byte plane as it arrives (in threads when
    nproc > 1), and the pieces are joined into one standard zlib stream per
    chunk when the slab of frames is complete. Memory is the compressed
    slab plus a frame or two in flight.

    Frames come raw (:meth:`add_raw`); each thread masks and deflates its
    group of tiles with ``native.chunk_codec.encode_tiles`` (in C without
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
        # Bands of tile rows, for frames decoded a band at a time: (y0, tiles at y 0).
        self._bands = [
            (y0, np.array([(0, x0) for x0 in range(0, nx, cx)], dtype=np.int64).reshape(-1, 2))
            for y0 in range(0, ny, cy)
        ]
        self._local = threading.local()  # per-thread band buffer
        # A padding frame (or padding tile): all-zero planes, encoded once.
        self._zero = codec.encode_segment(np.zeros(cy * cx, dtype=np.uint8), level)
        # Per frame, a list of parts; each part is (or will be, as a future) a
        # list of (tile pieces, masked pixels) for consecutive tiles.
        self._frames: deque = deque()
        self._inflight: deque = deque()
        self.masked_dynamic = 0

    def _encode_raw(self, frame, tiles: np.ndarray) -> tuple[list, int]:
        _, cy, cx = self.chunks
        return codec.encode_tiles(
            frame.raw,
            frame.static_valid,
            frame.trusted_range,
            (cy, cx),
            tiles,
            self.level,
            frame.extra_valid,
        )

    def add_raw(self, frame) -> None:
        """Queue one raw frame (a :class:`dials_mdxbg.frames.raw_frame.RawFrame`).

        A frame that can be decoded a band at a time (Eiger chunks) is encoded
        band by band, each task decoding its own rows. Another frame still in
        its stored form (CBF files) is decoded by a task of its own, and only
        then are its tile groups queued: no worker sits waiting on another's
        decode, and the next frame's decode starts on whichever thread is free
        (measured on the real thaumatin 6M bzip2 CBFs at nproc 2: 4.6-5.0 s
        against 9.5-10.9 s with the tile tasks queued beside the decode).
        """
        if getattr(frame, "rows", None) is not None and frame.needs_decode:
            # Eiger chunks: each task decodes one band of tile rows and deflates its
            # tiles, so decoding runs on every thread and no 72 MB frame is held.
            self._queue(self._encode_band, frame, self._bands)
            return
        if self.pool is not None and getattr(frame, "needs_decode", False):
            self._track(self.pool.submit(self._decode_then_encode, frame))
            return
        self._queue(self._encode_raw, frame, self._tile_groups)

    def _encode_band(self, frame, band: tuple[int, np.ndarray]) -> tuple[list, int]:
        y0, tiles = band
        _, cy, cx = self.chunks
        nx = frame.static_valid.shape[1]
        buffer = getattr(self._local, "band", None)
        if buffer is None or buffer.shape != (cy, nx):
            buffer = self._local.band = np.empty((cy, nx), dtype=np.int32)
        rows = frame.rows(y0, buffer)
        window = slice(y0, y0 + rows.shape[0])
        extra = None if frame.extra_valid is None else frame.extra_valid[window]
        return codec.encode_tiles(
            rows, frame.static_valid[window], frame.trusted_range, (cy, cx), tiles, self.level,
            extra,
        )  # fmt: skip

    def _decode_then_encode(self, frame) -> list:
        frame.prefetch()
        return [self.pool.submit(self._encode_raw, frame, tiles) for tiles in self._tile_groups]

    def _queue(self, encode, frame, tile_sets: list) -> None:
        """``encode(frame, tiles)`` for each set of tiles: now, or in the pool."""
        if self.pool is None:
            self._frames.append([encode(frame, tiles) for tiles in tile_sets])
            return
        self._track([self.pool.submit(encode, frame, tiles) for tiles in tile_sets])

    def _track(self, parts) -> None:
        """Queue one frame's parts (futures, or a future of them) and bound the frames in flight."""
        self._frames.append(parts)
        # Each frame in flight holds its input (a decoded frame) until encoded.
        self._inflight.append(parts)
        while len(self._inflight) > self.max_inflight:
            _parts_of(self._inflight.popleft())

    def _tile_pieces(self, parts) -> list:
        per_tile = []
        for part in _parts_of(parts):
            pieces, n_dynamic = part if isinstance(part, tuple) else part.result()
            self.masked_dynamic += n_dynamic
            per_tile += pieces
        return per_tile

    def take_slab(self) -> list:
        """The queued frames' parts, leaving the queue empty for the next slab.

        Frames still being encoded stay bounded (see :meth:`_track`) across slabs.
        """
        frames = list(self._frames)
        self._frames.clear()
        return frames

    def chunks_of(self, frames: list, depth: int) -> Iterator[tuple[tuple[int, int], bytes]]:
        """Join the pieces of ``frames`` (from :meth:`take_slab`) into one chunk per tile.

        Waits for the frames' encoding to finish. ``depth`` is the dataset's
        chunk depth; missing frames are zero padding.
        """
        cf = depth
        per_frame = [self._tile_pieces(parts) for parts in frames]
        frames.clear()
        for i, tile in enumerate(self.tiles):
            pieces = []
            for k in range(4):
                pieces += [frame[i][k] for frame in per_frame]
                pieces += [self._zero] * (cf - len(per_frame))
            for frame in per_frame:
                frame[i] = None  # a frame's compressed bytes go once all its tiles are out
            # Plane-major order: byte 0 of every element of the chunk, then byte 1...
            yield tile, codec.join_segments(pieces)

    @property
    def n_queued(self) -> int:
        """Frames queued since the last slab."""
        return len(self._frames)


def _parts_of(parts) -> list:
    """A frame's parts once its tile tasks exist (waits for them to finish)."""
    if isinstance(parts, Future):
        parts = parts.result()
    for part in parts:
        if isinstance(part, Future):
            part.result()
    return parts
