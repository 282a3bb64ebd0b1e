"""Direct chunk reader for NXmx (Eiger) imagesets: the pixels dxtbx gives, read faster.

dxtbx 3.11's ``FormatNXmx.get_raw_data`` reads a frame through h5py, so the
bitshuffle/LZ4 decode runs inside HDF5 behind h5py's global lock (and the
GIL): measured on a generated Eiger2 16M sweep, 106 ms of the 123 ms a frame
costs in the one-step binning, and nothing to gain from a second core. Here
only the I/O runs under h5py (``read_direct_chunk``, 3-4 ms per 16M frame);
the chunk is decoded by a C kernel called through ctypes, which releases the
GIL (~29 ms per 16M frame on one AVX2 core), so frames decode in parallel in
the worker threads that mask and bin them.

The values are exactly ``imageset.get_raw_data(i)``'s (see
``FormatNXmx.get_raw_data`` and ``dxtbx.nexus``): the signal dataset (or
NXdata's first entry), the module's slice, integers cast to int32 as numpy
casts them (uint32 wraps: ``0xFFFFFFFF`` -> -1), then with
``bit_depth_readout`` the values ``top - 1`` -> -1 and ``top - 2`` -> -2
(``top = 2**31`` for 32 bits, else ``2**bits``). dxtbx still does everything
else: geometry, trusted range, masks.

Several data files. A DLS-style master whose data is a virtual dataset over
several files is read file by file (dxtbx reads it too). A DECTRIS filewriter
master with ``data_000001 .. data_00000N`` external links and no signal is
read in full here, in link order; dxtbx 3.11 reads only ``data_000001`` and
fails past it. The frames must add up to the scan, else a one-line error.
A data file that is missing is a one-line error before anything is read
(HDF5 would read a missing virtual-dataset source as zeros, silently).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from dials_mdxbg.errors import InputError
from dials_mdxbg.frames.buffers import FrameBuffers
from dials_mdxbg.native.detector_codecs import bslz4_decode, flag_top, has_c_bslz4

logger = logging.getLogger("dials.mdxbg.frames")

#: HDF5 filter id of bitshuffle, and its LZ4 compression flag (cd_values[4]).
BSHUF_FILTER = 32008
BSHUF_LZ4 = 2
_DATA_LINK = re.compile(r"data_(\d{6})$")


@dataclass(frozen=True)
class Segment:
    """Frames ``first .. first + count - 1`` of the sweep, stored in one dataset."""

    file: Path
    dataset: str
    first: int  # first frame of the sweep in this segment
    count: int
    offset: int  # index of that frame in the dataset


@dataclass
class EncodedFrame:
    """One frame as read from the file (bytes), decoded later without the GIL."""

    chunk: bytes | None  # a bitshuffle/LZ4 chunk, or None when ``array`` holds the frame
    filtered: bool  # False when HDF5 stored this chunk unfiltered (filter mask set)
    array: np.ndarray | None
    reader: NXmxDirect
    index: int  # frame index in the data file
    file: Path | None = None  # the data file
    image: int = 0  # the sweep's image number (1-based), for messages

    @property
    def where(self) -> str:
        """The frame in messages: the sweep's image number and where it is stored."""
        return f"image {self.image} (frame {self.index + 1} of data file {self.file})"

    def decode(self, out: np.ndarray | None = None) -> np.ndarray:
        """The frame as dxtbx's ``get_raw_data`` gives it (int32, (ny, nx)).

        Args:
            out: int32 frame buffer to decode into when the chunk allows it.
        """
        return self.reader._finish(self, out)


class NXmxDirect(FrameBuffers):
    """Reads frames of one FormatNXmx imageset from the data files' chunks.

    Use :meth:`for_imageset`; it returns None where this reader does not apply
    (another format, floats, several modules, chunks that are not one frame),
    and the caller then reads through dxtbx.
    """

    def __init__(
        self,
        master: Path,
        segments: list[Segment],
        dtype: np.dtype,
        frame_shape: tuple[int, int],
        window: tuple[slice, slice] | None,
        bit_depth: int | None,
        indices: list[int],
    ):
        super().__init__(frame_shape)
        self.master = master
        self.segments = segments
        self.dtype = np.dtype(dtype)
        self.window = window
        self.bit_depth = bit_depth
        self.indices = indices
        self._files: dict[Path, h5py.File] = {}
        self._datasets: dict[tuple[Path, str], tuple[h5py.Dataset, bool]] = {}

    def pooled(self) -> bool:
        """Whole int32 frames decode into pooled buffers (not windows or other types)."""
        return self.window is None and self.dtype.itemsize == 4

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def for_imageset(cls, imageset) -> NXmxDirect | None:
        """The direct reader for ``imageset``, or None to read it through dxtbx.

        Raises:
            InputError: a data file of the master is missing, or the data files
                do not hold the frames the scan has.
        """
        fmt_class = imageset.get_format_class()
        # By name: importing FormatNXmx (dxtbx.nexus, pint) costs ~0.5 s in every CBF run.
        if fmt_class is None or not any(
            c.__name__ == "FormatNXmx" and c.__module__.startswith("dxtbx.format")
            for c in fmt_class.__mro__
        ):
            return None
        master = Path(imageset.get_path(0)).resolve()
        fmt = fmt_class.get_instance(str(master), **imageset.data().get_params())
        with h5py.File(master, "r", swmr=True) as fh:
            nxmx = fmt._get_nxmx(fh)
            nxdetector = nxmx.entries[0].instruments[0].detectors[0]
            import dxtbx.nexus

            slices = dxtbx.nexus.get_detector_module_slices(nxdetector)
            return cls.build(
                master, nxmx.entries[0].data[0], slices, fmt.get_num_images(),
                getattr(fmt, "_bit_depth_readout", None), imageset.indices(),
            )  # fmt: skip

    @classmethod
    def build(cls, master: Path, nxdata, slices, n_images: int, bit_depth, indices):
        """The reader of ``nxdata`` (``_handle``, ``signal``), its modules' ``slices``; or None."""
        segments, dtype, shape = _segments(master, nxdata, n_images)
        if segments is None:
            return None
        if len(slices) != 1 or not np.issubdtype(dtype, np.integer) or dtype.itemsize > 4:
            return None
        sy, sx = slices[0]
        window = None if (sy, sx) == (slice(0, shape[0], 1), slice(0, shape[1], 1)) else (sy, sx)
        return cls(master, segments, dtype, shape, window, bit_depth, list(indices))

    # ---- reading ------------------------------------------------------------------------

    def _dataset(self, seg: Segment) -> tuple[h5py.Dataset, bool]:
        key = (seg.file, seg.dataset)
        if key not in self._datasets:
            f = self._files.get(seg.file)
            if f is None:
                # swmr as dxtbx opens them: HDF5 refuses one file open twice with different flags.
                f = self._files[seg.file] = h5py.File(seg.file, "r", swmr=True)
            dset = f[seg.dataset]
            self._datasets[key] = (dset, _direct_chunks_ok(dset, self.frame_shape))
        return self._datasets[key]

    def locate(self, index: int) -> tuple[Segment, int]:
        """Segment and dataset index of the sweep's frame ``index`` (0-based in the file)."""
        for seg in self.segments:
            if seg.first <= index < seg.first + seg.count:
                return seg, seg.offset + index - seg.first
        raise IndexError(f"frame {index} is not in {self.master}")

    def read(self, k: int) -> EncodedFrame:
        """Read imageset frame ``k`` (only I/O: h5py's lock is held here, not during decode).

        Without the C decoder, or for chunks it does not handle, the frame is
        read through h5py and hdf5plugin instead: the same values, slower.
        """
        seg, i = self.locate(self.indices[k])
        dset, direct = self._dataset(seg)
        image = self.indices[k] + 1
        try:
            # Our checked decoders, C or numpy: hdf5plugin's bitshuffle filter can
            # crash the process (SIGSEGV) on a corrupt chunk.
            if direct and can_decode_bslz4():
                mask, chunk = dset.id.read_direct_chunk((i, 0, 0))
                return EncodedFrame(chunk, not (mask & 1), None, self, i, seg.file, image)
            return EncodedFrame(None, False, dset[i], self, i, seg.file, image)
        except (OSError, ValueError, KeyError) as e:
            raise InputError(
                f"cannot read image {image} (frame {i + 1} of data file {seg.file}): {e}"
            ) from None

    def check(self, k: int) -> None:
        """Decode imageset frame ``k`` with our checked decoder (before dxtbx reads it).

        Raises:
            InputError: the stored frame is corrupt, naming the image and data file.
        """
        seg, _ = self.locate(self.indices[k])
        if self._dataset(seg)[1] and can_decode_bslz4():  # else hdf5plugin is not involved
            self.read(k).decode()

    def _finish(self, frame: EncodedFrame, out: np.ndarray | None) -> np.ndarray:
        if frame.array is not None:
            raw = frame.array
        elif frame.filtered:
            target = out if self.dtype.itemsize == 4 else None
            if target is not None:
                target = target.view(self.dtype)
            try:
                raw = bslz4_decode(frame.chunk, self.frame_shape, self.dtype, target)
            except ValueError as e:
                raise InputError(f"{frame.where}: {e}") from None
        else:
            raw = np.frombuffer(frame.chunk, self.dtype).reshape(self.frame_shape)
        if self.window is not None:
            raw = np.ascontiguousarray(raw[self.window])
        return to_dxtbx_int32(raw, self.bit_depth)

    @property
    def flag_top(self) -> int:
        """``top`` of the bit-depth flags (see :func:`to_dxtbx_int32`), 0 for none."""
        if not self.bit_depth:
            return 0
        top = 2**31 if self.bit_depth == 32 else 2**self.bit_depth
        return top if top - 2 <= np.iinfo(np.int32).max else 0

    def bins_directly(self, frame: EncodedFrame) -> bool:
        """True when ``frame`` can be decoded and binned in one C pass (no frame buffer)."""
        return (
            frame.chunk is not None
            and frame.filtered
            and self.window is None
            and self.dtype.itemsize == 4
            and has_c_bslz4()
        )

    def close(self) -> None:
        """Close the data files."""
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._datasets.clear()


def can_decode_bslz4() -> bool:
    """True when our bitshuffle/LZ4 decoder runs here: in C, or its numpy twin (lz4)."""
    if has_c_bslz4():
        return True
    try:
        import lz4.block  # noqa: F401
    except ImportError:
        return False
    return True


def to_dxtbx_int32(raw: np.ndarray, bit_depth: int | None) -> np.ndarray:
    """``FormatNXmx.get_raw_data``'s values: numpy's int32 cast, then the bit-depth flags."""
    if raw.dtype == np.uint32:
        out = raw.view(np.int32)  # numpy's cast wraps: the same bits
    else:
        out = raw.astype(np.int32, copy=False)
    if bit_depth and not out.flags.writeable:
        out = out.copy()
    if bit_depth:
        top = 2**31 if bit_depth == 32 else 2**bit_depth
        if top - 2 <= np.iinfo(np.int32).max:  # else no int32 value can equal the flags
            flag_top(out, top)
    return out


def _direct_chunks_ok(dset: h5py.Dataset, shape: tuple[int, int]) -> bool:
    """True when every chunk is one whole frame, bitshuffle/LZ4 compressed (or unfiltered)."""
    if dset.chunks != (1,) + tuple(shape) or dset.is_virtual:
        return False
    plist = dset.id.get_create_plist()
    filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
    if not filters:
        return False  # contiguous-like plain chunks: h5py reads them fast enough
    if len(filters) != 1 or filters[0][0] != BSHUF_FILTER:
        return False
    cd = filters[0][2]
    return len(cd) >= 5 and cd[4] == BSHUF_LZ4 and cd[2] == dset.dtype.itemsize


def _resolve(master: Path, name: str) -> Path:
    """A data file named in the master, as HDF5 finds it (master's folder, then cwd)."""
    if name == ".":
        return master
    path = Path(name)
    if path.is_absolute():
        return path
    here = master.parent / path
    return here if here.exists() or not path.exists() else path.resolve()


def _missing(master: Path, path: Path) -> InputError:
    return InputError(f"data file {path} of {master} is missing")


def _segments(master: Path, nxdata, n_images: int):
    """The segments dxtbx's dataset is made of, its dtype and frame shape.

    Returns (None, None, None) where the layout is not one this reader handles.
    """
    group = nxdata._handle
    signal = nxdata.signal
    if isinstance(signal, bytes):
        signal = signal.decode()
    if signal and signal in group:
        names = [signal]
    else:
        keys = list(group.keys())
        if not keys:
            return None, None, None
        links = sorted((k for k in keys if _DATA_LINK.match(k)), key=lambda k: k)
        # dxtbx takes the first entry; a DECTRIS master's links are read in full here.
        names = links if links and keys[0] == links[0] else keys[:1]
    segments: list[Segment] = []
    dtype = shape = None
    first = 0
    for name in names:
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            path = _resolve(master, link.filename)
            if not path.exists():
                raise _missing(master, path)
            try:
                with h5py.File(path, "r", swmr=True) as f:
                    dset = f[link.path]
                    parts, dtype_i, shape_i = _dataset_segments(master, path, dset, first)
                    _check_image_numbers(master, path, dset, first)
            except (KeyError, OSError) as e:
                raise InputError(f"cannot read {link.path} in data file {path}: {e}") from None
        else:
            dset = group[name]
            if not isinstance(dset, h5py.Dataset):
                return None, None, None
            parts, dtype_i, shape_i = _dataset_segments(master, master, dset, first)
        if parts is None:
            return None, None, None
        if dtype is not None and (dtype_i != dtype or shape_i != shape):
            raise InputError(f"the data files of {master} differ in pixel type or frame shape")
        dtype, shape = dtype_i, shape_i
        segments.extend(parts)
        first = sum(s.count for s in segments)
    if first < n_images:
        raise InputError(f"the data files of {master} hold {first} frames, the scan has {n_images}")
    return segments, dtype, shape


def _check_image_numbers(master: Path, path: Path, dset: h5py.Dataset, first: int) -> None:
    """Refuse a data file whose ``image_nr_low/high`` (DECTRIS) are not the images it is linked as.

    A copy of another data file would otherwise be read as these images.
    """
    low, high = dset.attrs.get("image_nr_low"), dset.attrs.get("image_nr_high")
    if low is None or high is None or dset.ndim != 3:
        return
    expected = (first + 1, first + dset.shape[0])
    if (int(np.ravel(low)[0]), int(np.ravel(high)[0])) != expected:
        raise InputError(
            f"data file {path} of {master}: its image_nr_low/high say images "
            f"{int(np.ravel(low)[0])}..{int(np.ravel(high)[0])}, but the master links it as "
            f"images {expected[0]}..{expected[1]}: a copy of another data file?"
        )


def _dataset_segments(master: Path, path: Path, dset: h5py.Dataset, first: int):
    """Segments of one (possibly virtual) 3-D dataset, its frames from sweep frame ``first``."""
    if dset.ndim != 3:
        return None, None, None
    n, ny, nx = dset.shape
    if not dset.is_virtual:
        return [Segment(path, dset.name, first, n, 0)], dset.dtype, (ny, nx)
    plist = dset.id.get_create_plist()
    parts = []
    for i in range(plist.get_virtual_count()):
        vspace = plist.get_virtual_vspace(i)
        src_path = _resolve(path, plist.get_virtual_filename(i))
        if not src_path.exists():
            raise _missing(master, src_path)
        frames = _frame_block(vspace, (n, ny, nx))
        if frames is None:
            return None, None, None
        src = plist.get_virtual_srcspace(i)
        name = plist.get_virtual_dsetname(i)
        try:
            with h5py.File(src_path, "r", swmr=True) as f:
                link = f.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    # e.g. DLS: the VDS maps /entry/data/data_000001, a link to the data file.
                    target = _resolve(src_path, link.filename)
                    if not target.exists():
                        raise _missing(master, target)
                    src_path, name = target, link.path
                    with h5py.File(src_path, "r", swmr=True) as g:
                        src_shape = g[name].shape
                else:
                    src_shape = f[name].shape
        except (KeyError, OSError) as e:
            raise InputError(f"cannot read {name} in data file {src_path}: {e}") from None
        if src.get_select_type() == h5py.h5s.SEL_ALL:
            src_frames = (0, src_shape[0])
        else:
            src_frames = _frame_block(src, src_shape)
        if src_frames is None or src_frames[1] - src_frames[0] != frames[1] - frames[0]:
            return None, None, None
        parts.append(
            Segment(src_path, name, first + frames[0], frames[1] - frames[0], src_frames[0])
        )
    parts.sort(key=lambda s: s.first)
    covered = first
    for s in parts:
        if s.first != covered:
            # A gap HDF5 would fill with zeros: the frames are not stored anywhere.
            raise InputError(f"frames {covered}..{s.first - 1} of {master} are in no data file")
        covered += s.count
    return parts, dset.dtype, (ny, nx)


def _frame_block(space, shape) -> tuple[int, int] | None:
    """(start, stop) frames when ``space`` selects whole frames start..stop-1, else None."""
    if space.get_select_type() != h5py.h5s.SEL_HYPERSLABS or not space.is_regular_hyperslab():
        return None
    start, stride, count, block = space.get_regular_hyperslab()
    if len(start) != 3:
        return None
    frames = count[0] * block[0]
    if stride[0] != block[0] and count[0] > 1:
        return None
    for axis in (1, 2):
        if start[axis] != 0 or count[axis] * block[axis] != shape[axis]:
            return None
        if count[axis] > 1 and stride[axis] != block[axis]:
            return None
    return int(start[0]), int(start[0] + frames)
