"""The binned background map file: mdx2's GridData plus our extra datasets."""

from __future__ import annotations

import io
import os
from pathlib import Path

import h5py
import numpy as np

from dials_mdxbg.native.chunk_codec import encode_chunk
from dials_mdxbg.series.layout import BINNED, describe_fields, new_file, nxdata
from dials_mdxbg.util.atomic import atomic_path, check_writable, ensure_space

EXTRAS_LEVEL = 1
"""gzip level of the extras (ours alone; ISA-L's level 1 is ~8x faster than zlib's 4)."""

_PIECE = 16 << 20  # bytes per write of the signal


class SparseImage(io.RawIOBase):
    """The bytes HDF5 writes into a file, kept as pieces (h5py's file-object driver).

    A range HDF5 allocated but never wrote (a dataset created with
    :func:`unwritten_dataset`) takes no memory here; :func:`write_image` fills
    it from the caller's array straight into the file, so the map's signal is
    never copied into an in-memory file.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[tuple[int, bytes]] = []
        self.size = 0
        self._pos = 0

    def readable(self) -> bool:  # noqa: D102
        return True

    def writable(self) -> bool:  # noqa: D102
        return True

    def seekable(self) -> bool:  # noqa: D102
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:  # noqa: D102
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:  # noqa: D102
        return self._pos

    def write(self, data) -> int:  # noqa: D102
        data = bytes(data)
        self.pieces.append((self._pos, data))
        self._pos += len(data)
        self.size = max(self.size, self._pos)
        return len(data)

    def readinto(self, buffer) -> int:  # noqa: D102
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.size - self._pos))
        start, end = self._pos, self._pos + n
        view[:n] = bytes(n)
        for offset, data in self.pieces:  # in order: a later write wins, as in a file
            lo, hi = max(start, offset), min(end, offset + len(data))
            if lo < hi:
                view[lo - start : hi - start] = data[lo - offset : hi - offset]
        self._pos = end
        return n

    def truncate(self, size: int | None = None) -> int:  # noqa: D102
        size = self._pos if size is None else size
        cut = []
        for offset, data in self.pieces:
            if offset < size:
                cut.append((offset, data[: size - offset]))
        self.pieces, self.size = cut, size
        return size


def unwritten_dataset(group: h5py.Group, name: str, shape: tuple, dtype) -> int:
    """A contiguous dataset whose space is allocated now and never written by HDF5.

    Returns:
        Its byte offset in the file (where :func:`write_image` puts its values).
    """
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    space = h5py.h5s.create_simple(tuple(shape))
    htype = h5py.h5t.py_create(np.dtype(dtype))
    dataset = h5py.h5d.create(group.id, name.encode(), htype, space, dcpl=dcpl)
    return int(dataset.get_offset())


def write_chunks(group: h5py.Group, name: str, values: np.ndarray, level: int) -> None:
    """A shuffle + gzip dataset of ``values`` (h5py's chunk shape), chunks deflated by us.

    The chunks are what HDF5's own filters read (:mod:`dials_mdxbg.native.chunk_codec`),
    deflated with ISA-L when present; edge chunks are zero-padded to full size as
    HDF5 stores them.
    """
    values = np.ascontiguousarray(values)
    dataset = group.create_dataset(
        name, shape=values.shape, dtype=values.dtype, compression="gzip",
        compression_opts=level, shuffle=True,
    )  # fmt: skip
    chunks = dataset.chunks
    full = np.zeros(chunks, dtype=values.dtype)
    grid = [range(0, n, c) for n, c in zip(values.shape, chunks)]
    for origin in np.ndindex(*(len(g) for g in grid)):
        start = tuple(g[i] for g, i in zip(grid, origin))
        window = tuple(slice(s, s + c) for s, c in zip(start, chunks))
        part = values[window]
        if part.shape != chunks:
            full[...] = 0
            full[tuple(slice(0, n) for n in part.shape)] = part
            part = full
        dataset.id.write_direct_chunk(start, encode_chunk(part, level))


def write_image(path: Path, image: SparseImage, holes: list[tuple[int, np.ndarray]]) -> None:
    """Write ``image`` with each ``(offset, array)`` of ``holes`` at its offset, atomically.

    The space is checked first (:func:`ensure_space`); a full disk or an I/O
    error is one :class:`~dials_mdxbg.errors.OutputError` and no file.
    """
    with atomic_path(path) as tmp:
        ensure_space(tmp, image.size, margin=0)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            os.ftruncate(fd, image.size)
            for offset, data in image.pieces:
                _pwrite_all(fd, memoryview(data), offset)
            for offset, array in holes:
                flat = memoryview(np.ascontiguousarray(array)).cast("B")
                for k in range(0, len(flat), _PIECE):
                    _pwrite_all(fd, flat[k : k + _PIECE], offset + k)
        finally:
            os.close(fd)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def write_binned(
    path: Path,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    signal: np.ndarray,
    extra: dict[str, np.ndarray],
    provenance: dict | None = None,
) -> None:
    """Write the binned background map atomically, as mdx2's GridData.

    The file is made in memory and written in one piece: HDF5 never writes to
    the disk itself, so a full disk is one clean error (HDF5 1.10 crashes at
    exit after failing to flush a file; see :mod:`dials_mdxbg.util.atomic`).
    The signal (mdx2's plain float64 field, most of a fine map) is not copied
    into the in-memory file: HDF5 allocates its place and we write it there.
    """
    path = Path(path)
    check_writable(path)
    signal = np.ascontiguousarray(signal, dtype=np.float64)
    image = SparseImage()
    f, entry = new_file(image, path, provenance)
    with f:
        group = nxdata(entry, BINNED, "signal", "mdx2.geometry", "GridData")
        holes = [(unwritten_dataset(group, "signal", signal.shape, np.float64), signal)]
        for name, values in zip(("phi", "iy", "ix"), axes):
            group.create_dataset(name, data=np.asarray(values, dtype=np.float64))
        for name, values in extra.items():
            # Extras are ours alone: compressed (mdx2's own fields stay plain).
            write_chunks(group, name, values, EXTRAS_LEVEL)
        describe_fields(group)
    write_image(path, image, holes)
