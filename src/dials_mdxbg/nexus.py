"""All NeXus/HDF5 reading and writing, in mdx2's layout.

Image series (``dials.mdx_import``, read by ``mdx2.io.loadobj``)::

    /                       attrs mdx2_version, creator, file_name, file_time, ...
    /entry                  NXentry
    /entry/image_series     NXdata  signal='data' axes=['phi','iy','ix']
                                    mdx2_module='mdx2.data' mdx2_class='ImageSeries'
        data                int32 (n, ny, nx), -1 = masked; gzip(1)+shuffle chunks
        phi, iy, ix         float64 axes; exposure_times float64 (n,)
    /entry/dials_mdxbg      NXcollection: effective PHIL, versions, input experiments

Binned background (``dials.mdx_bin_background``, read by ``mdx2.correct``)::

    /entry/binned_image_series  NXdata signal='signal' axes=['phi','iy','ix']
                                mdx2_module='mdx2.geometry' mdx2_class='GridData'
        signal              float64 counts/s, NaN = empty bin
        phi, iy, ix         bin-centre coordinates
        errors              standard error of the mean (counts/s); NeXpy's error bars
        pixel_count         valid pixels per bin

Outputs appear atomically: everything is written under a temporary name in
the destination directory and renamed when complete.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from dials_mdxbg import __version__, codec, kernels
from dials_mdxbg.errors import InputError

MDX2_LAYOUT_VERSION = "1.0.5"
"""mdx2 release whose file layout we write (mdx2 only warns on a mismatch)."""

IMAGE_SERIES = "image_series"
BINNED = "binned_image_series"
PROVENANCE = "dials_mdxbg"
_DEFLATE, _SHUFFLE = 1, 2  # HDF5 filter ids


# --------------------------------------------------------------------------- output plumbing


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; rename it into place on success.

    On any exception the temporary file is removed, so no partial output that
    looks valid is ever left behind.
    """
    final = Path(final)
    tmp = final.with_name(f".{final.name}.part-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_writable(path: Path) -> None:
    """Fail early, with one line, if ``path`` cannot be created."""
    directory = Path(path).resolve().parent
    if not directory.is_dir():
        raise InputError(f"output directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"output directory {directory} is not writable")


def _root_attrs(f: h5py.File, final_name: Path) -> None:
    f.attrs["mdx2_version"] = MDX2_LAYOUT_VERSION
    f.attrs["creator"] = "dials-mdxbg"
    f.attrs["creator_version"] = __version__
    f.attrs["file_name"] = str(Path(final_name).resolve())
    f.attrs["file_time"] = datetime.datetime.now().isoformat()
    f.attrs["HDF5_Version"] = h5py.version.hdf5_version
    f.attrs["h5py_version"] = h5py.version.version
    f.attrs["default"] = "entry"


def _nxdata(entry: h5py.Group, name: str, signal: str, module: str, cls: str) -> h5py.Group:
    group = entry.create_group(name)
    group.attrs["NX_class"] = "NXdata"
    group.attrs["signal"] = signal
    group.attrs["axes"] = ["phi", "iy", "ix"]
    group.attrs["mdx2_module"] = module
    group.attrs["mdx2_class"] = cls
    return group


def _provenance(entry: h5py.Group, provenance: dict | None) -> None:
    if not provenance:
        return
    group = entry.create_group(PROVENANCE)
    group.attrs["NX_class"] = "NXcollection"
    for key, value in provenance.items():
        text = value if isinstance(value, str) else json.dumps(value, indent=1, default=str)
        group.create_dataset(key, data=text, dtype=h5py.string_dtype())


def _new_file(
    path: Path, final_name: Path, provenance: dict | None
) -> tuple[h5py.File, h5py.Group]:
    f = h5py.File(path, "w")
    _root_attrs(f, final_name)
    entry = f.create_group("entry")
    entry.attrs["NX_class"] = "NXentry"
    _provenance(entry, provenance)
    return f, entry


# --------------------------------------------------------------------------- image series: write


@dataclass
class SeriesAxes:
    """Everything in an image series except the pixels."""

    phi: np.ndarray
    iy: np.ndarray
    ix: np.ndarray
    exposure_times: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_frames, ny, nx)."""
        return (len(self.phi), len(self.iy), len(self.ix))

    def frames(self, start: int, stop: int) -> SeriesAxes:
        """The axes of frames [start, stop)."""
        return SeriesAxes(self.phi[start:stop], self.iy, self.ix, self.exposure_times[start:stop])


def _create_series_group(
    entry: h5py.Group,
    axes: SeriesAxes,
    chunks: tuple[int, int, int],
    level: int,
    resizable: bool = False,
) -> h5py.Dataset:
    group = _nxdata(entry, IMAGE_SERIES, "data", "mdx2.data", "ImageSeries")
    group.create_dataset("phi", data=np.asarray(axes.phi, dtype=np.float64))
    group.create_dataset("iy", data=np.asarray(axes.iy, dtype=np.float64))
    group.create_dataset("ix", data=np.asarray(axes.ix, dtype=np.float64))
    group.create_dataset("exposure_times", data=np.asarray(axes.exposure_times, dtype=np.float64))
    # A resizable frame axis lets a part of a series keep the full chunk depth,
    # so its chunks can later be copied as they are into the whole series.
    return group.create_dataset(
        "data",
        shape=axes.shape,
        maxshape=(None, *axes.shape[1:]) if resizable else None,
        dtype=np.int32,
        chunks=tuple(min(c, s) for c, s in zip(chunks, axes.shape))
        if not resizable
        else (chunks[0], *(min(c, s) for c, s in zip(chunks[1:], axes.shape[1:]))),
        compression="gzip",
        compression_opts=level,
        shuffle=True,
    )


class _SlabEncoder:
    """Compresses frames tile by tile into per-chunk deflate pieces.

    A chunk spans ``cf`` frames, but it is never held: each frame is
    deflated per tile and byte plane as it arrives (in threads when
    nproc > 1), and the pieces are joined into one standard zlib stream per
    chunk when the slab of frames is complete. Memory is the compressed
    slab plus a frame or two in flight.

    Frames come either raw (:meth:`add_raw`: masked and deflated in C, the
    GIL released for the whole frame) or as masked byte planes
    (:meth:`add_planes`: deflated piece by piece with the isal package).
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

    def _encode_planes(self, planes: np.ndarray, tile: tuple[int, int]) -> tuple[list, int]:
        _, cy, cx = self.chunks
        y0, x0 = tile
        pieces = []
        for k in range(planes.shape[0]):
            part = planes[k, y0 : y0 + cy, x0 : x0 + cx]
            if part.shape != (cy, cx):
                # HDF5 stores edge chunks at full size; pad (value irrelevant).
                full = np.zeros((cy, cx), dtype=np.uint8)
                full[: part.shape[0], : part.shape[1]] = part
                part = full
            pieces.append(codec.encode_segment(part, self.level))
        return [pieces], 0

    def _encode_raw(self, frame, tiles: np.ndarray) -> tuple[list, int]:
        _, cy, cx = self.chunks
        level = codec.deflate_level(self.level)
        result = kernels.encode_tiles(
            frame.raw, frame.static_valid, frame.trusted_range, (cy, cx), tiles, level
        )
        if result is None:  # out of room: the slow path, same bytes
            planes, n_dynamic = frame.planes()
            pieces = [self._encode_planes(planes, (y0, x0))[0][0] for y0, x0 in tiles.tolist()]
            return pieces, n_dynamic
        return result

    def can_take_raw(self, frame) -> bool:
        """True when :meth:`add_raw` can take this frame (C encoder, no shadow mask)."""
        return (
            codec.DEFLATE_BACKEND == "isal"
            and frame.extra_valid is None
            and kernels.have_compiled_encoder()
        )

    def add_raw(self, frame) -> None:
        """Queue one raw frame (a :class:`dials_mdxbg.frames.RawFrame`)."""
        self._queue(self._encode_raw, frame, self._tile_groups)

    def add_planes(self, planes: np.ndarray, n_dynamic: int = 0) -> None:
        """Queue one frame's masked byte planes (4, ny, nx) for compression."""
        self.masked_dynamic += n_dynamic
        self._queue(self._encode_planes, planes, self.tiles)

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


class ImageSeriesWriter:
    """Write an mdx2 image series frame by frame, atomically.

    Use as a context manager and call :meth:`add_frame` with each frame's
    byte planes (:func:`dials_mdxbg.kernels.mask_to_planes`), in order.
    The multi-file layout is made of such series, one per part, joined by
    :func:`assemble_series`.
    """

    def __init__(
        self,
        path: Path,
        axes: SeriesAxes,
        chunks: tuple[int, int, int],
        level: int = 1,
        nthreads: int = 1,
        provenance: dict | None = None,
        resizable: bool = False,
    ):
        self.path = Path(path)
        self.axes = axes
        self.resizable = resizable
        self.chunks = tuple(min(c, s) for c, s in zip(chunks, axes.shape))
        if resizable:
            self.chunks = (chunks[0], *self.chunks[1:])
        self.level = level
        self.nthreads = nthreads
        self.provenance = provenance
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ImageSeriesWriter:
        check_writable(self.path)
        stack = self._stack
        self._tmp = stack.enter_context(atomic_path(self.path))
        pool = stack.enter_context(ThreadPoolExecutor(self.nthreads)) if self.nthreads > 1 else None
        self._encoder = _SlabEncoder(
            self.axes.shape, self.chunks, self.level, pool, self.frames_in_flight, self.nthreads
        )
        self._file, entry = _new_file(self._tmp, self.path, self.provenance)
        stack.callback(self._file.close)
        self._dset = _create_series_group(entry, self.axes, self.chunks, self.level, self.resizable)
        self._slab_start = 0
        return self

    @property
    def frames_in_flight(self) -> int:
        """At most this many added frames may still be read by compression threads.

        One is enough: its tiles keep every thread busy while the next frame is
        read; more only cost memory (measured: same time, +25 MB per frame).
        """
        return 1 if self.nthreads > 1 else 0

    def add_frame(self, planes: np.ndarray, n_dynamic: int = 0) -> None:
        """Append the next frame, given as masked byte planes (4, ny, nx) uint8."""
        self._encoder.add_planes(planes, n_dynamic)
        self._after_add()

    def can_take_raw(self, frame) -> bool:
        """True when :meth:`add_raw_frame` can take ``frame`` (else mask it to planes)."""
        return self._encoder.can_take_raw(frame)

    def add_raw_frame(self, frame) -> None:
        """Append the next frame as read (a RawFrame): masked and deflated in C."""
        self._encoder.add_raw(frame)
        self._after_add()

    @property
    def masked_dynamic(self) -> int:
        """Pixels masked by the trusted range/shadow in the frames encoded so far."""
        return self._encoder.masked_dynamic

    def _after_add(self) -> None:
        if self._encoder.n_queued == self.chunks[0]:
            self._flush_slab()

    def _flush_slab(self) -> None:
        n = self._encoder.n_queued
        if n == 0:
            return
        start = self._slab_start
        for (y0, x0), payload in self._encoder.chunks_of_slab(self._dset.chunks[0]):
            self._dset.id.write_direct_chunk((start, y0, x0), payload)
        self._slab_start += n

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._flush_slab()
                if self._slab_start != self.axes.shape[0]:
                    raise RuntimeError(f"wrote {self._slab_start} of {self.axes.shape[0]} frames")
            except BaseException:
                self._stack.__exit__(*sys.exc_info())
                raise
        # Closing the stack closes the file, then renames it into place (or deletes it).
        self._stack.__exit__(exc_type, exc, tb)


def assemble_series(
    output: Path,
    axes: SeriesAxes,
    chunks: tuple[int, int, int],
    level: int,
    parts: list[tuple[Path, int, int]],
    parts_dir: Path,
    split: bool,
    provenance: dict | None = None,
) -> None:
    """Join part files (each frames [a, b) of the series) into the final output, atomically.

    ``split``: the parts folder is renamed to ``<output stem>_parts`` and the
    main file maps it with a virtual dataset (paths relative to the main file).
    Otherwise the compressed chunks are copied as they are into one file (no
    recompression) and the parts are deleted.
    """
    output = Path(output)
    check_writable(output)
    final_parts = output.with_name(output.stem + "_parts")
    with atomic_path(output) as tmp:
        f, entry = _new_file(tmp, output, provenance)
        with f:
            if split:
                group = _nxdata(entry, IMAGE_SERIES, "data", "mdx2.data", "ImageSeries")
                for name in ("phi", "iy", "ix", "exposure_times"):
                    group.create_dataset(name, data=np.asarray(getattr(axes, name), np.float64))
                layout = h5py.VirtualLayout(shape=axes.shape, dtype=np.int32)
                for path, a, b in parts:
                    layout[a:b] = h5py.VirtualSource(
                        f"{final_parts.name}/{Path(path).name}",
                        f"/entry/{IMAGE_SERIES}/data",
                        shape=(b - a, *axes.shape[1:]),
                    )
                group.create_virtual_dataset("data", layout, fillvalue=-1)
            else:
                dset = _create_series_group(entry, axes, chunks, level)
                for path, a, _ in parts:
                    with h5py.File(path, "r") as part:
                        _copy_chunks(part[f"/entry/{IMAGE_SERIES}/data"], dset, a)
        if split:
            if final_parts.exists():
                shutil.rmtree(final_parts)
            os.replace(parts_dir, final_parts)


def _copy_chunks(source: h5py.Dataset, target: h5py.Dataset, frame0: int) -> None:
    """Copy every stored chunk of ``source`` into ``target`` at frame offset ``frame0``."""
    if source.chunks != target.chunks:
        raise RuntimeError(f"part chunks {source.chunks} differ from {target.chunks}")
    cf, cy, cx = source.chunks
    n, ny, nx = source.shape
    for f0 in range(0, n, cf):
        for y0 in range(0, ny, cy):
            for x0 in range(0, nx, cx):
                filter_mask, payload = source.id.read_direct_chunk((f0, y0, x0))
                target.id.write_direct_chunk((frame0 + f0, y0, x0), payload, filter_mask)


# --------------------------------------------------------------------------- image series: read


@dataclass
class _Segment:
    """Frames [start, stop) of the series stored in ``dset`` from its frame 0."""

    start: int
    stop: int
    dset: h5py.Dataset


def _fast_path(dset: h5py.Dataset) -> bool:
    """True when chunks can be decoded by :mod:`codec` (deflate, optional shuffle)."""
    if dset.chunks is None or dset.dtype != np.int32:
        return False
    plist = dset.id.get_create_plist()
    codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    return codes in ([_DEFLATE], [_SHUFFLE, _DEFLATE])


class ImageSeriesReader:
    """Read an mdx2 image series (ours or mdx2's, plain or virtual) in blocks.

    Blocks follow the storage chunks, so each chunk is decoded once, straight
    from its compressed bytes when the filters allow (any thread may decode).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._files: list[h5py.File] = []
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise InputError(
                f"{self.path} is not a readable HDF5 file (truncated or corrupt?): {e}"
            ) from None
        self._files.append(f)
        group = f.get(f"/entry/{IMAGE_SERIES}")
        if not isinstance(group, h5py.Group):
            found = ", ".join(f["entry"].keys()) if isinstance(f.get("entry"), h5py.Group) else ""
            raise InputError(
                f"{self.path} is not an image series: no /entry/{IMAGE_SERIES}"
                + (f" (it has /entry/{found})" if found else "")
            )
        missing = [k for k in ("data", "phi", "iy", "ix", "exposure_times") if k not in group]
        if missing:
            raise InputError(
                f"{self.path}: /entry/{IMAGE_SERIES} lacks dataset(s) {', '.join(missing)}"
            )
        self.data = group["data"]
        try:
            self.axes = SeriesAxes(
                group["phi"][()], group["iy"][()], group["ix"][()], group["exposure_times"][()]
            )
        except OSError as e:
            raise InputError(f"{self.path}: cannot read the series axes ({e})") from None
        if self.data.ndim != 3 or self.data.shape != self.axes.shape:
            raise InputError(
                f"{self.path}: data shape {self.data.shape} does not match the axes "
                f"{self.axes.shape}"
            )
        self.segments = self._segments()

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_frames, ny, nx)."""
        return self.data.shape

    def _resolve_source(self, name: str) -> Path:
        """Find a virtual source file as HDF5 would: next to the main file, then cwd."""
        if name == ".":
            return self.path
        candidate = Path(name)
        if candidate.is_absolute():
            options = [candidate]
        else:
            options = [self.path.parent / candidate, Path.cwd() / candidate]
        for option in options:
            if option.is_file():
                return option
        raise InputError(
            f"{self.path}: image data file {name} is missing (looked in "
            + ", ".join(str(o.parent) for o in options)
            + ")"
        )

    def _segments(self) -> list[_Segment]:
        if not self.data.is_virtual:
            return [_Segment(0, self.shape[0], self.data)]
        segments = []
        for vmap in self.data.virtual_sources():
            (f0, y0, x0), (f1, y1, x1) = vmap.vspace.get_select_bounds()
            full_frames = (y0, x0, y1, x1) == (0, 0, self.shape[1] - 1, self.shape[2] - 1)
            source = self._resolve_source(vmap.file_name)
            try:
                f = h5py.File(source, "r")
            except OSError as e:
                raise InputError(f"{source} is not a readable HDF5 file: {e}") from None
            self._files.append(f)
            if vmap.dset_name not in f:
                raise InputError(f"{source} lacks dataset {vmap.dset_name}")
            dset = f[vmap.dset_name]
            # h5py cannot always report the source selection (HDF5 1.10); the
            # frame-slab layout is recognised by the source being exactly the slab.
            if not full_frames or dset.shape != (f1 - f0 + 1, self.shape[1], self.shape[2]):
                return [_Segment(0, self.shape[0], self.data)]  # unusual: let HDF5 map it
            segments.append(_Segment(int(f0), int(f1) + 1, dset))
        segments.sort(key=lambda s: s.start)
        covered = sum(s.stop - s.start for s in segments)
        if covered != self.shape[0]:
            raise InputError(
                f"{self.path}: virtual data covers {covered} of {self.shape[0]} frames"
            )
        return segments

    def close(self) -> None:
        """Close every file opened."""
        for f in self._files:
            f.close()
        self._files.clear()

    def __enter__(self) -> ImageSeriesReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def iter_blocks(
        self, frame_range: tuple[int, int] | None = None
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(frame0, row0, block)`` covering the series once.

        ``block`` is int32 (frames, rows, nx), full width, one row of storage
        chunks: memory stays a few tens of MB whatever the series length.
        ``frame_range`` restricts to frames [start, stop).
        """
        for frame0, row0, load in self.iter_block_loaders(frame_range):
            yield frame0, row0, load()

    def iter_block_loaders(
        self, frame_range: tuple[int, int] | None = None
    ) -> Iterator[tuple[int, int, Callable[[], np.ndarray]]]:
        """Like :meth:`iter_blocks`, but each block comes as a loader to call.

        The compressed bytes are fetched here (HDF5 calls stay in the calling
        thread); decoding happens when the loader is called, so loaders can run
        in worker threads.
        """
        start, stop = frame_range or (0, self.shape[0])
        for seg in self.segments:
            lo, hi = max(seg.start, start), min(seg.stop, stop)
            if lo < hi:
                yield from self._segment_loaders(seg, lo, hi)

    def _segment_loaders(self, seg: _Segment, lo: int, hi: int):
        dset = seg.dset
        ny, nx = self.shape[1:]
        cf, cy, cx = dset.chunks or (min(10, hi - lo), min(ny, 256), nx)
        fast = _fast_path(dset)
        shuffled = fast and dset.id.get_create_plist().get_nfilters() == 2
        # Walk chunk-aligned frame slabs of the source dataset.
        first = ((lo - seg.start) // cf) * cf
        for f0 in range(first, hi - seg.start, cf):
            f1 = min(f0 + cf, seg.stop - seg.start)
            take = (max(f0, lo - seg.start) - f0, min(f1, hi - seg.start) - f0)
            for y0 in range(0, ny, cy):
                y1 = min(y0 + cy, ny)
                if fast:
                    load = self._row_loader(dset, f0, f1, y0, y1, shuffled, take)
                else:
                    load = _slice_loader(dset, f0 + take[0], f0 + take[1], y0, y1)
                yield seg.start + f0 + take[0], y0, load

    def _row_loader(self, dset, f0, f1, y0, y1, shuffled, take):
        """Fetch one row of compressed chunks now; return a function that decodes it."""
        cf, cy, cx = dset.chunks
        nx = self.shape[2]
        payloads = []
        for x0 in range(0, nx, cx):
            try:
                filter_mask, payload = dset.id.read_direct_chunk((f0, y0, x0))
            except (KeyError, OSError, ValueError):
                filter_mask, payload = None, None  # never written: HDF5 fills it
            if filter_mask != 0:  # unusual chunk: let HDF5 decode it
                payload = dset[f0:f1, y0:y1, x0 : min(x0 + cx, nx)]
            payloads.append((x0, filter_mask, payload))

        def load() -> np.ndarray:
            out = np.empty((f1 - f0, y1 - y0, nx), dtype=np.int32)
            for x0, filter_mask, payload in payloads:
                x1 = min(x0 + cx, nx)
                if filter_mask != 0:
                    out[:, :, x0:x1] = payload
                elif shuffled and kernels.decode_chunk_into(payload, (cf, cy, cx), out, x0):
                    pass  # inflated and unshuffled in place, in C
                else:
                    raw = codec.inflate(payload)  # once, whichever way it is unshuffled
                    if not (shuffled and kernels.unshuffle_into(raw, (cf, cy, cx), out, x0)):
                        chunk = codec.decode_inflated(raw, np.int32, (cf, cy, cx), shuffled)
                        out[:, :, x0:x1] = chunk[: f1 - f0, : y1 - y0, : x1 - x0]
            return out[take[0] : take[1]]

        return load

    @property
    def block_frames(self) -> int:
        """Frames per block (the storage chunk depth)."""
        chunks = self.segments[0].dset.chunks
        return chunks[0] if chunks else min(10, self.shape[0])


def _slice_loader(dset: h5py.Dataset, f0: int, f1: int, y0: int, y1: int):
    def load() -> np.ndarray:
        return np.asarray(dset[f0:f1, y0:y1, :], dtype=np.int32)

    return load


def is_image_series_file(path: str | os.PathLike) -> bool:
    """True if ``path`` looks like an mdx2 NeXus file (to route it past dxtbx)."""
    p = Path(path)
    if not p.is_file():
        return False
    if p.suffix.lower() in (".nxs", ".nx5", ".nexus"):
        return True
    try:
        if not h5py.is_hdf5(p):
            return False
        with h5py.File(p, "r") as f:
            return "mdx2_version" in f.attrs or f"entry/{IMAGE_SERIES}" in f
    except OSError:
        return False


def read_mdx2_mask(path: Path, shape: tuple[int, int, int]) -> h5py.Dataset:
    """Open an mdx2 mask file (``/entry/mask``, True = excluded) lazily, checking its shape."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"mask {path} is not a readable HDF5 file: {e}") from None
    group = f.get("entry/mask")
    if not isinstance(group, h5py.Group) or group.attrs.get("signal", "") not in group:
        raise InputError(f"mask {path} has no /entry/mask NXdata with a signal")
    dset = group[group.attrs["signal"]]
    if dset.shape != tuple(shape):
        raise InputError(
            f"mask {path} has shape {dset.shape}, but the image series is {tuple(shape)}"
        )
    return dset


# --------------------------------------------------------------------------- binned map


def write_binned(
    path: Path,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    signal: np.ndarray,
    extra: dict[str, np.ndarray],
    provenance: dict | None = None,
) -> None:
    """Write the binned background map atomically, as mdx2's GridData."""
    path = Path(path)
    check_writable(path)
    with atomic_path(path) as tmp:
        f, entry = _new_file(tmp, path, provenance)
        with f:
            group = _nxdata(entry, BINNED, "signal", "mdx2.geometry", "GridData")
            group.create_dataset("signal", data=np.asarray(signal, dtype=np.float64))
            group["signal"].attrs["units"] = "counts/s"
            for name, values in zip(("phi", "iy", "ix"), axes):
                group.create_dataset(name, data=np.asarray(values, dtype=np.float64))
            for name, values in extra.items():
                # Extras are ours alone: compress them (mdx2's own fields stay plain).
                group.create_dataset(
                    name, data=values, compression="gzip", compression_opts=4, shuffle=True
                )
            entry.attrs["default"] = BINNED
