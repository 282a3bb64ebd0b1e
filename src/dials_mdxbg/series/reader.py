"""Read mdx2 image series (ours or mdx2's, plain or virtual) in blocks of storage chunks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from dials_mdxbg.errors import InputError
from dials_mdxbg.model import BlockTask, SeriesAxes, check_axes
from dials_mdxbg.native.chunk_codec import decode_chunk_into
from dials_mdxbg.series.counts import as_counts
from dials_mdxbg.series.layout import DEFLATE, IMAGE_SERIES, SHUFFLE
from dials_mdxbg.series.stored_block import StoredBlock, StoredRow, stored_loader
from dials_mdxbg.util.progress import Progress

_AXES = ("phi", "iy", "ix", "exposure_times")


def _dataset(group: h5py.Group, name: str, path: Path) -> h5py.Dataset:
    """``group[name]``, which must be a dataset (not a group, not a dangling link)."""
    item = group.get(name)
    if not isinstance(item, h5py.Dataset):
        what = "a group" if isinstance(item, h5py.Group) else "a link to nothing"
        raise InputError(f"{path}: {group.name}/{name} is {what}, not a dataset")
    return item


def _axis(group: h5py.Group, name: str, path: Path) -> np.ndarray:
    """A numeric axis of the series as float64 (strings and other types are refused)."""
    dset = _dataset(group, name, path)
    if dset.dtype.kind not in "iuf" or dset.ndim > 1:
        raise InputError(
            f"{path}: {group.name}/{name} must be a list of numbers, but it holds "
            f"{dset.dtype} values of shape {dset.shape}"
        )
    try:
        return np.asarray(dset[()], dtype=np.float64).reshape(-1)
    except OSError as e:
        raise InputError(f"{path}: cannot read {group.name}/{name} ({_first_line(e)})") from None


def _span(phi: np.ndarray) -> str:
    return f"{phi[0]:g}..{phi[-1]:g} deg" if phi.size else "empty"


def _first_line(error: Exception) -> str:
    return str(error).strip().split("\n")[0][:160]


@dataclass
class _Segment:
    """Frames [start, stop) of the series stored in ``dset`` from its frame 0."""

    start: int
    stop: int
    dset: h5py.Dataset


def _fast_path(dset: h5py.Dataset) -> bool:
    """True when we decode the chunks ourselves (int32, deflate, optional shuffle)."""
    if dset.chunks is None or dset.dtype != np.int32:
        return False
    plist = dset.id.get_create_plist()
    codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    return codes in ([DEFLATE], [SHUFFLE, DEFLATE])


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
        self.data = _dataset(group, "data", self.path)
        if self.data.dtype.kind not in "iuf":
            raise InputError(
                f"{self.path}: /entry/{IMAGE_SERIES}/data holds {self.data.dtype} values, "
                "not counts (integers or floats)"
            )
        self.axes = SeriesAxes(*(_axis(group, k, self.path) for k in _AXES))
        if self.data.ndim != 3 or self.data.shape != self.axes.shape:
            raise InputError(
                f"{self.path}: data shape {self.data.shape} does not match the axes "
                f"{self.axes.shape}"
            )
        n = self.data.shape[0]
        if n == 0:
            raise InputError(f"{self.path} has 0 frames: there is nothing to bin")
        if self.axes.exposure_times.shape != (n,):
            raise InputError(
                f"{self.path}: exposure_times has {self.axes.exposure_times.size} values for "
                f"{n} frames; re-import the series"
            )
        check_axes(self.axes, 1, str(self.path))
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
        where = " and ".join(dict.fromkeys(str(o.parent.absolute()) for o in options))
        raise InputError(
            f"{self.path}: its image data file {name} is missing (looked in {where}); keep "
            "the data files (e.g. mdx2's datastore/ folder) beside the main file"
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
            dset = f.get(vmap.dset_name)
            if not isinstance(dset, h5py.Dataset):
                raise InputError(f"{source} lacks dataset {vmap.dset_name}")
            self._check_source(source, f, dset, int(f0), int(f1) + 1)
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

    def _check_source(self, source: Path, f: h5py.File, dset: h5py.Dataset, a: int, b: int):
        """Refuse a data file that is not this series' frames [a, b).

        HDF5 would read a short source's missing frames as the fill value, and
        a relative source name can resolve to another sweep's file in the
        working folder (mdx2's datastore/): a part that is an image series
        itself (ours, mdx2's) must carry this series' phi for those frames.
        """
        if dset.ndim != 3 or dset.shape[0] < b - a:
            raise InputError(
                f"{source}: holds {dset.shape[0] if dset.ndim else 0} frames of data, but "
                f"{self.path} maps its frames {a + 1}..{b} to it; the file is cut short"
            )
        group = f.get(f"/entry/{IMAGE_SERIES}")
        if not isinstance(group, h5py.Group) or dset.parent != group or "phi" not in group:
            return
        phi = _axis(group, "phi", source)
        if phi.shape != (b - a,) or not np.allclose(phi, self.axes.phi[a:b], rtol=0, atol=1e-9):
            raise InputError(
                f"{source}: its phi ({_span(phi)}) is not that of frames {a + 1}..{b} of "
                f"{self.path} ({_span(self.axes.phi[a:b])}): another series' data file, or "
                "files swapped; keep each data file with its own main file"
            )

    @property
    def files(self) -> list[Path]:
        """The main file and every data file its virtual dataset maps."""
        return [Path(f.filename) for f in self._files]

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
        self,
        frame_range: tuple[int, int] | None = None,
        first_frames: np.ndarray | None = None,
    ) -> Iterator[tuple[int, int, Callable[[], np.ndarray | StoredBlock]]]:
        """Like :meth:`iter_blocks`, but each block comes as a loader to call.

        The compressed bytes are fetched here (HDF5 calls stay in the calling
        thread); decoding happens when the loader is called, so loaders can run
        in worker threads.

        ``first_frames``: if given, the loaders of chunks we decode ourselves
        give :class:`~dials_mdxbg.series.stored_block.StoredBlock` s (binned
        while they inflate), each of which starts at any of these frames it
        holds (the report's sampled frames); else every loader gives an array.
        """
        start, stop = frame_range or (0, self.shape[0])
        for seg in self.segments:
            lo, hi = max(seg.start, start), min(seg.stop, stop)
            if lo < hi:
                yield from self._segment_loaders(seg, lo, hi, first_frames)

    def _segment_loaders(self, seg: _Segment, lo: int, hi: int, first_frames=None):
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
                if not fast:
                    load = _slice_loader(dset, f0 + take[0], f0 + take[1], y0, y1, seg.start)
                    yield seg.start + f0 + take[0], y0, load
                    continue
                payloads = self._fetch_row(dset, f0, f1, y0, y1)
                if first_frames is None or not shuffled or any(m != 0 for _, m, _ in payloads):
                    yield seg.start + f0 + take[0], y0, _row_loader(
                        dset, payloads, (f0, f1, y0, y1), shuffled, take, self.shape[2]
                    )
                    continue
                # Cut at the sampled frames inside the block (not at its first).
                base = seg.start + f0
                cuts = [int(s) - base for s in first_frames if take[0] < s - base < take[1]]
                bounds = [take[0], *cuts, take[1]]
                # Read twice (histogram, then bins) when the row starts at a sampled frame.
                shared = len(bounds) > 2 or any(int(s) == base + take[0] for s in first_frames)
                row = StoredRow(
                    [(x0, p) for x0, _, p in payloads], dset.chunks, (f0, f1), (y0, y1),
                    self.shape[2], dset.file.filename, shared=shared,
                )  # fmt: skip
                for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
                    yield base + a, y0, stored_loader(row, (a, b), backwards=i % 2 == 1)

    def _fetch_row(self, dset, f0, f1, y0, y1) -> list[tuple[int, int | None, object]]:
        """One row of compressed chunks, fetched now: ``(x0, filter_mask, payload)`` each.

        A chunk HDF5 must decode itself (never written, or a filter skipped)
        comes as its counts instead, read through HDF5, with mask None or non-zero.
        """
        cx = dset.chunks[2]
        nx = self.shape[2]
        payloads = []
        for x0 in range(0, nx, cx):
            try:
                filter_mask, payload = dset.id.read_direct_chunk((f0, y0, x0))
            except (KeyError, OSError, ValueError):
                filter_mask, payload = None, None  # never written: HDF5 fills it
            if filter_mask != 0:  # unusual chunk: let HDF5 decode it
                payload = _read(dset, f0, f1, y0, y1, 0)[:, :, x0 : min(x0 + cx, nx)]
            payloads.append((x0, filter_mask, payload))
        return payloads

    @property
    def block_frames(self) -> int:
        """Frames per block (the storage chunk depth)."""
        chunks = self.segments[0].dset.chunks
        return chunks[0] if chunks else min(10, self.shape[0])


def _row_loader(dset, payloads, where, shuffled, take, nx):
    """A function that decodes a fetched row of chunks into a block (frames ``take``)."""
    cf, cy, cx = dset.chunks
    f0, f1, y0, y1 = where

    def load() -> np.ndarray:
        try:
            return decode()
        except InputError:
            raise
        except Exception:  # zlib/isal/our C inflater: any failure is a corrupt chunk
            raise InputError(
                f"{dset.file.filename}: the compressed chunk of frames {f0 + 1}..{f1}, rows "
                f"{y0}..{y1 - 1} is corrupt (it does not inflate); re-import the series"
            ) from None

    def decode() -> np.ndarray:
        out = np.empty((f1 - f0, y1 - y0, nx), dtype=np.int32)
        for x0, filter_mask, payload in payloads:
            if filter_mask != 0:
                out[:, :, x0 : min(x0 + cx, nx)] = payload
            else:
                decode_chunk_into(payload, (cf, cy, cx), out, x0, shuffled)
        return out[take[0] : take[1]]

    return load


def _slice_loader(dset: h5py.Dataset, f0: int, f1: int, y0: int, y1: int, frame0: int = 0):
    """Frames [f0, f1) of ``dset`` (series frame ``frame0 + f0`` first) as checked int32."""

    def load() -> np.ndarray:
        return as_counts(_read(dset, f0, f1, y0, y1, frame0), dset.file.filename, frame0 + f0, y0)

    return load


def _read(dset: h5py.Dataset, f0: int, f1: int, y0: int, y1: int, frame0: int) -> np.ndarray:
    try:
        return dset[f0:f1, y0:y1, :]
    except (OSError, ValueError) as e:  # a checksum, a filter, a short virtual source...
        raise InputError(
            f"{dset.file.filename}: cannot read frames {frame0 + f0 + 1}..{frame0 + f1}, rows "
            f"{y0}..{y1 - 1} ({_first_line(e)}); the file is damaged or incomplete"
        ) from None


def is_image_series_file(path: str | os.PathLike) -> bool:
    """True if ``path`` looks like an mdx2 NeXus file (to route it past dxtbx)."""
    p = Path(path)
    if not p.is_file():
        return False
    named = p.suffix.lower() in (".nxs", ".nx5", ".nexus")
    try:
        if not h5py.is_hdf5(p):
            return named  # a damaged .nxs: the reader says what is wrong with it
        with h5py.File(p, "r") as f:
            if "mdx2_version" in f.attrs or f"entry/{IMAGE_SERIES}" in f:
                return True
            # An NXmx master (detector images) goes to dxtbx, even when named .nxs.
            nxmx = isinstance(f.get("entry/instrument"), h5py.Group) or "entry/definition" in f
            return named and not nxmx
    except OSError:
        return named


def series_tasks(
    reader: ImageSeriesReader,
    progress: Progress | None = None,
    frame_range: tuple[int, int] | None = None,
    first_frames: np.ndarray | None = None,
):
    """Block tasks from an image series file (decoding happens in the workers).

    ``first_frames``: the frames binning wants first in a block (its sampled
    frames); given, blocks are binned while they inflate (see
    :meth:`ImageSeriesReader.iter_block_loaders`).
    """

    def make() -> Iterator[BlockTask]:
        last = 0
        for frame0, row0, load in reader.iter_block_loaders(frame_range, first_frames):
            if progress is not None and frame0 > last:
                progress.update(frame0)
                last = frame0
            yield frame0, row0, load
        if progress is not None:
            progress.update(reader.shape[0])

    return make
