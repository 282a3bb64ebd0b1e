"""A block of an image series as its stored chunks: binned while they inflate.

The reader fetches a row of compressed chunks (frames ``f0 .. f1`` of the
storage chunks, rows ``y0 .. y1``, the whole width) in the reading thread. A
:class:`StoredBlock` is some of those frames, handed to a worker: it inflates
each chunk into a buffer (C, without the GIL) and adds it into the bin sums
straight from the stored byte planes (:func:`~dials_mdxbg.native.bin_kernels.bin_chunk_planes`),
so the block of counts (20 MB for 10 frames of 211 rows of a 6M image) is
never written and read back. The sums are those of binning the block.

Binning sees a block through the frame protocol of :mod:`dials_mdxbg.model`
(``bin_into``, ``masked``, ``masked_slabs``): as a frame, it is binned in one
pass when nothing else is asked; its counts come as an array otherwise. A
sampled frame of the report's histogram must be the first frame of its block
(the binning counts a frame's values only there), so the reader cuts the
chunk rows at those frames; the pieces of one row share its inflated chunks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np

from dials_mdxbg.errors import InputError
from dials_mdxbg.native import lib
from dials_mdxbg.native.bin_kernels import bin_block, bin_chunk_planes, squares_add_exactly
from dials_mdxbg.native.chunk_codec import inflate_into, unshuffle_into
from dials_mdxbg.native.value_histogram import add_masked_values

#: (x0, payload) of each stored chunk of a row, left to right.
Payloads = list[tuple[int, bytes]]


class StoredRow:
    """One row of stored chunks (frames ``f0 .. f1`` of the chunks, rows ``y0 .. y1``).

    Attributes:
        chunk_shape: (cf, cy, cx) of the storage chunks.
        rows: image rows of the row (``y1 - y0``).
        nx: image width.
        where: the file, for messages.

    ``shared``: keep each inflated chunk for the row's other reads (its pieces
    cut at sampled frames, or the histogram of its first frame before its bins).
    """

    def __init__(
        self,
        payloads: Payloads,
        chunk_shape: tuple[int, int, int],
        frames: tuple[int, int],
        rows: tuple[int, int],
        nx: int,
        where: str,
        shared: bool = False,
    ):
        self.payloads = payloads
        self.chunk_shape = chunk_shape
        self.f0, self.f1 = frames
        self.y0, self.y1 = rows
        self.rows = self.y1 - self.y0
        self.nx = nx
        self.where = where
        # Pieces of a row cut at sampled frames share its inflated chunks, and so do
        # the histogram and the bins of a row that starts at a sampled frame.
        self._shared = shared
        self._planes: dict[int, np.ndarray] = {}
        self._locks = {x0: threading.Lock() for x0, _ in payloads}

    @property
    def chunk_bytes(self) -> int:
        """Bytes of one inflated chunk (four byte planes of int32)."""
        return 4 * int(np.prod(self.chunk_shape))

    def planes(self, x0: int, payload: bytes) -> np.ndarray:
        """The chunk at column ``x0`` inflated (once per row when it is ``shared``)."""
        if not self._shared:
            out = lib.scratch("stored_planes", self.chunk_bytes)[: self.chunk_bytes]
            self._inflate(payload, out)
            return out
        with self._locks[x0]:
            out = self._planes.get(x0)
            if out is None:
                out = np.empty(self.chunk_bytes, dtype=np.uint8)
                self._inflate(payload, out)
                self._planes[x0] = out
            return out

    def _inflate(self, payload: bytes, out: np.ndarray) -> None:
        try:
            inflate_into(payload, out)
        except Exception:  # zlib/isal/libdeflate: any failure is a corrupt chunk
            raise InputError(
                f"{self.where}: the compressed chunk of frames {self.f0 + 1}..{self.f1}, rows "
                f"{self.y0}..{self.y1 - 1} is corrupt (it does not inflate); re-import the series"
            ) from None


class _FramesAxis(np.ndarray):
    """A block given where a frame's masked array is expected.

    ``model.as_block`` adds a frame axis to a frame's array (``a[np.newaxis]``);
    a block has its frames already, so that indexing gives the block itself.
    """

    def __getitem__(self, key):
        if key is None:
            return self.view(np.ndarray)
        return self.view(np.ndarray)[key]


class StoredBlock:
    """Frames ``a .. b`` (chunk frames) of a :class:`StoredRow`, series frame ``frame0`` first.

    Args:
        row: the row of stored chunks.
        frames: chunk frames [a, b) of this block.
        backwards: visit the chunks right to left (the other piece of a row
            shared by two threads then inflates from the other end).
    """

    def __init__(self, row: StoredRow, frames: tuple[int, int], backwards: bool = False):
        self.row = row
        self.a, self.b = frames
        self.backwards = backwards

    @property
    def shape(self) -> tuple[int, int, int]:
        """(frames, rows, nx) of the block."""
        return self.b - self.a, self.row.rows, self.row.nx

    def array(self, frames: int | None = None) -> np.ndarray:
        """The block of counts, int32 (frames, rows, nx); its first ``frames`` only if given."""
        row = self.row
        nf, rows, nx = self.shape
        out = np.empty((nf if frames is None else min(frames, nf), rows, nx), dtype=np.int32)
        for x0, payload in row.payloads:
            unshuffle_into(row.planes(x0, payload), row.chunk_shape, out, x0, self.a)
        return out

    def masked(self) -> tuple[np.ndarray, int]:
        """The block as a frame's masked array (see :class:`_FramesAxis`), nothing masked."""
        return self.array().view(_FramesAxis), 0

    def masked_slabs(self, rows: int = 256) -> Iterator[np.ndarray]:
        """The rows of the block's first frame (the only one that can be a sampled frame)."""
        yield self.array(frames=1)[0]  # not the block's other frames: they are binned from planes

    def bin_into(self, sums, grid, frame: int, valid_range, values=None) -> int:
        """Add the block (series frame ``frame`` first) into ``sums``; 0 pixels were masked.

        ``values``: a value histogram's counts to add the block's values to, or None.
        """
        if values is not None:
            for rows in self.masked_slabs():
                add_masked_values(rows, values)
        row = self.row
        f_bins = grid.phi_index[frame : frame + self.b - self.a]
        y_bins = grid.y_index[row.y0 : row.y1]
        if not squares_add_exactly(valid_range, grid.x_edges):
            bin_block(self.array(), f_bins, y_bins, grid.x_edges, valid_range, sums)
            return 0
        cf, cy, cx = row.chunk_shape
        order = reversed(row.payloads) if self.backwards else row.payloads
        for x0, payload in order:
            extent = (row.rows, min(cx, row.nx - x0), x0)
            frames = (self.a, self.b)
            planes = row.planes(x0, payload)
            bin_chunk_planes(
                planes, row.chunk_shape, frames, extent, f_bins, y_bins, grid.x_edges,
                valid_range, sums,
            )  # fmt: skip
        return 0


def stored_loader(row: StoredRow, frames: tuple[int, int], backwards: bool) -> Callable:
    """A task's loader: the block, binned when the worker asks (nothing is decoded here)."""

    def load() -> StoredBlock:
        return StoredBlock(row, frames, backwards)

    return load
